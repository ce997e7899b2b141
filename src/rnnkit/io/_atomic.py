"""Atomic, plain-only file writes: the write side of checkpoints.

Documented (and imported) as part of :mod:`rnnkit.io.checkpoint`.
:func:`~rnnkit.io.checkpoint.atomic_save` first checks with
:func:`~rnnkit.io.checkpoint.check_plain` that the object holds only values a
``torch.load(..., weights_only=True)`` can read back, then
writes a temporary file in the target's folder, flushes and fsyncs it, renames it over the
target with :func:`os.replace` and fsyncs the folder. A crash at any moment leaves either the
previous file or the new one.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, cast

import torch
from torch import nn

from rnnkit.errors import CheckpointValueError, CheckpointWriteError

__all__ = [
    "PathLike",
    "atomic_copy",
    "atomic_save",
    "check_plain",
]

PathLike = str | os.PathLike[str]


# ----------------------------------------------------------------------------------------
# Plain values
# ----------------------------------------------------------------------------------------

_SCALARS: tuple[type, ...] = (int, float, bool, complex, str, type(None))
_TENSORS: tuple[type, ...] = (torch.Tensor, nn.Parameter)
_SEQUENCES: tuple[type, ...] = (list, tuple, torch.Size)
_MAPPINGS: tuple[type, ...] = (dict, collections.OrderedDict)
_KEYS: tuple[type, ...] = (str, int)

_HINTS = {
    "numpy.ndarray": "convert it with torch.from_numpy(value) or value.tolist()",
    "set": "store it as a sorted list",
    "frozenset": "store it as a sorted list",
    "collections.defaultdict": "store it as dict(value)",
    "pathlib.PosixPath": "store it as str(value)",
    "pathlib.WindowsPath": "store it as str(value)",
}


def _type_name(value: object) -> str:
    cls = type(value)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _hint_for(value: object) -> str:
    name = _type_name(value)
    if name in _HINTS:
        return _HINTS[name]
    if type(value).__module__ == "numpy":
        return "convert it to a Python number with value.item()"
    if isinstance(value, torch.Tensor):
        return "store a plain tensor, e.g. value.as_subclass(torch.Tensor)"
    return "convert it to tensors, numbers, str, lists and dicts (e.g. dataclasses.asdict)"


def _reject(value: object, key_path: str) -> CheckpointValueError:
    return CheckpointValueError(
        f"Expected every value in a checkpoint to be plain (torch.Tensor, int, float, bool, "
        f"complex, str, None, or a list / tuple / dict of those) so that "
        f"torch.load(weights_only=True) reads it back, but {key_path} is a "
        f"{_type_name(value)}. Hint: {_hint_for(value)}.",
        key_path=key_path,
    )


def check_plain(obj: object, root: str = "checkpoint") -> None:
    """Check that ``obj`` holds only values a ``weights_only=True`` load can read back.

    Allowed: :class:`torch.Tensor` (and :class:`torch.nn.Parameter`), ``int``, ``float``,
    ``bool``, ``complex``, ``str``, ``None``, and ``list``, ``tuple``, :class:`torch.Size`,
    ``dict`` and ``collections.OrderedDict`` of those, with ``str`` or ``int`` keys (an
    optimizer's ``state_dict()`` uses ``int`` keys). Subclasses (NumPy scalars, named tuples,
    enums) are refused: they pickle as their class.

    Args:
        obj: The object to check, typically a whole checkpoint dict.
        root: The name the key path in the error message starts with.

    Raises:
        rnnkit.CheckpointValueError: Naming the key path of the first value that is not plain, e.g.
            ``checkpoint['trainer']['rng']['numpy'][1] is a numpy.ndarray``.
    """
    _check_plain(obj, root, set())


def _check_plain(obj: object, key_path: str, open_ids: set[int]) -> None:
    kind = type(obj)
    if kind in _SCALARS or kind in _TENSORS:
        return
    if kind not in _SEQUENCES and kind not in _MAPPINGS:
        raise _reject(obj, key_path)
    if id(obj) in open_ids:
        raise CheckpointValueError(
            f"Expected a checkpoint to be a tree, but {key_path} contains itself.",
            key_path=key_path,
        )
    open_ids.add(id(obj))
    for key, child in _children(obj, key_path):
        _check_plain(child, f"{key_path}[{key!r}]", open_ids)
    open_ids.discard(id(obj))


def _children(obj: Any, key_path: str) -> list[tuple[object, object]]:
    if type(obj) not in _MAPPINGS:
        return list(enumerate(obj))
    for key in obj:
        if type(key) not in _KEYS:
            raise CheckpointValueError(
                f"Expected every dict key in a checkpoint to be a str or an int, but "
                f"{key_path} has the key {key!r}, a {_type_name(key)}. Hint: use str(key).",
                key_path=f"{key_path}[{key!r}]",
            )
    return list(obj.items())


_ERRNO_HINTS = {
    errno.ENOSPC: "the disk is full; free space or save to another folder",
    errno.EDQUOT: "the disk quota is exhausted; free space or save to another folder",
    errno.EFBIG: "the file exceeds the allowed file size (ulimit -f)",
    errno.EACCES: "permission denied; make the folder writable or save elsewhere",
    errno.EPERM: "operation not permitted; make the folder writable or save elsewhere",
    errno.EROFS: "the file system is read-only; save elsewhere",
    errno.ENOENT: "the folder does not exist; create it first",
}


def _write_error(path: Path, exc: BaseException, *, replaced: bool) -> CheckpointWriteError:
    hint = _ERRNO_HINTS.get(getattr(exc, "errno", None) or 0, "check the folder and the disk")
    state = (
        "The new file is in place, but the rename may not survive a power cut"
        if replaced
        else "The previous file at that path (if any) is unchanged"
    )
    return CheckpointWriteError(
        f"Could not write the checkpoint {str(path)!r}: {exc}. {state}. Hint: {hint}."
    )


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _open_temp(temp: Path) -> IO[bytes]:
    """Create ``temp`` exclusively (permissions from the umask, like a normal file)."""
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    return os.fdopen(fd, "wb")


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable; skipped where folders cannot be opened (Windows)."""
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems refuse fsync on a folder
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


class _Writer:
    """A binary file for :func:`torch.save` that remembers the OS error of a failed write.

    ``torch.save`` turns an :class:`OSError` raised by ``write`` into a bare
    :class:`RuntimeError` ("unexpected pos ..."); keeping it gives the real cause (ENOSPC).
    """

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.handle.flush()


def _atomic_write(path: PathLike, write: Callable[[_Writer], None]) -> None:
    target = Path(path).absolute()
    temp = _temp_path(target)
    writer = None
    try:
        with _open_temp(temp) as handle:
            writer = _Writer(handle)
            write(writer)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
        if isinstance(exc, (OSError, RuntimeError)):  # torch.save reports some as RuntimeError
            cause = writer.error if writer is not None and writer.error is not None else exc
            raise _write_error(target, cause, replaced=False) from cause
        raise
    try:
        _fsync_dir(target.parent)
    except OSError as exc:
        raise _write_error(target, exc, replaced=True) from exc


def atomic_save(obj: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Save ``obj`` with :func:`torch.save` so that ``path`` is never half-written.

    The object is checked with :func:`~rnnkit.io.checkpoint.check_plain` first. It is then
    written to a temporary file ``.<name>.<pid>.<random>.tmp`` in the same folder, flushed and
    fsynced, renamed over ``path`` with :func:`os.replace` (atomic on POSIX and Windows), and
    the folder is fsynced so the rename survives a power cut. A process killed at any moment
    leaves ``path`` as it was before or as it is after, never partial; only a stray ``.tmp``
    file may remain.

    Args:
        obj: The dict to save, typically from :func:`~rnnkit.io.checkpoint.make_checkpoint`.
        path: The target file; its folder must exist.

    Raises:
        rnnkit.CheckpointValueError: A value is not plain; the message names its key path. Nothing
            is written.
        rnnkit.CheckpointWriteError: The write failed (disk full, permission denied, missing
            folder, ...). The previous file at ``path`` is unchanged and the temporary file
            is removed.
    """
    check_plain(obj)
    _atomic_write(path, lambda handle: torch.save(obj, cast("IO[bytes]", handle)))


def atomic_copy(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Copy the file ``source`` to ``path``, as safely as :func:`~rnnkit.io.checkpoint.atomic_save`.

    Args:
        source: An existing file, e.g. a checkpoint just written.
        path: The target file; its folder must exist.

    Raises:
        rnnkit.CheckpointWriteError: Reading ``source`` or writing ``path`` failed; the previous
            file at ``path`` is unchanged.
    """
    try:
        src = open(source, "rb")  # noqa: SIM115 - closed below; opened first to name it on failure
    except OSError as exc:
        raise CheckpointWriteError(
            f"Could not copy the checkpoint {str(source)!r} to {str(Path(path).absolute())!r}: "
            f"{exc.strerror or exc}. The file at the target (if any) is unchanged. Hint: the "
            "file to copy must exist and be readable."
        ) from exc
    with src:
        _atomic_write(path, lambda handle: shutil.copyfileobj(src, handle, 1 << 20))
