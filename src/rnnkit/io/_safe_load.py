"""Reading a checkpoint file safely: its kind, its bytes, then a ``weights_only`` load.

Before anything is unpickled, :func:`check_file` refuses anything but a regular file (without
opening it) and :func:`check_container` verifies the header, the zip index and every part's
CRC, telling a foreign pickle from a damaged file. :func:`torch_load` then reads it with
``torch.load(..., weights_only=True)`` and turns torch's errors into rnnkit's
:class:`~rnnkit.errors.CheckpointError` subclasses; :func:`corrupt` builds the error for a
damaged or malformed file.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import re
import stat
import zipfile
from pathlib import Path
from typing import Any

import torch

from rnnkit.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    ForeignCheckpointError,
)

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_MAGIC = b"\x80"  # a pickle of protocol 2 or later (torch's legacy files among them)
_GLOBAL_RE = re.compile(r"(?:Unsupported global: |unsupported )GLOBAL (\S+)")
_SCAN_LIMIT = 1 << 20  # bytes of a non-PyTorch file scanned for pickled objects


def check_file(path: Path) -> None:
    """Refuse anything but a regular file, without opening it (a FIFO would block)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise CheckpointNotFoundError(
            f"Expected a checkpoint file at {str(path)!r}, but nothing is there. Hint: check "
            f"the path; ModelCheckpoint writes '<dirpath>/last.ckpt' and one file per kept epoch."
        ) from None
    except OSError as exc:
        raise CheckpointError(
            f"Could not read the checkpoint {str(path)!r}: {exc}. Hint: check that this user "
            f"may read it."
        ) from exc
    if stat.S_ISDIR(info.st_mode):
        raise CheckpointNotFoundError(
            f"Expected {str(path)!r} to be a checkpoint file, but it is a folder. Hint: pass a "
            f"file inside it, e.g. {str(path / 'last.ckpt')!r}."
        )
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointNotFoundError(
            f"Expected {str(path)!r} to be a checkpoint file, but it is not a regular file "
            f"(it is {_special_kind(info.st_mode)}), so it was not read. Hint: pass the path "
            f"of a checkpoint file, e.g. '<dirpath>/last.ckpt'."
        )


def _special_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "a special file")


_DAMAGED_HINT = (
    "use an earlier checkpoint; rnnkit writes atomically, so a damaged file was cut or "
    "altered after it was written (a copy, a transfer, a full disk elsewhere)"
)


def corrupt(path: Path, what: str, hint: str = _DAMAGED_HINT) -> CorruptCheckpointError:
    return CorruptCheckpointError(
        f"Expected {str(path)!r} to be a complete rnnkit checkpoint, but it is {what}. "
        f"Hint: {hint}."
    )


def check_container(path: Path) -> None:
    """Verify the bytes before unpickling: header, zip index and every member's CRC."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(256)
    except OSError as exc:
        raise CheckpointError(
            f"Could not read the checkpoint {str(path)!r}: {exc}. Hint: check that this user "
            f"may read it."
        ) from exc
    if not head:
        raise corrupt(path, "empty (0 bytes)")
    if head.startswith(_PICKLE_MAGIC):  # a pickle: PyTorch's legacy (pre-1.6) format or not
        _refuse_plain_pickle(path)  # its first pickle imports a class: not torch's magic number
        if _starts_with_torch_magic(head):
            return  # the legacy format (no checksums): torch.load reads it
        raise corrupt(
            path,
            "not a PyTorch file (a pickle that does not start with PyTorch's magic number)",
            "check that the path names a checkpoint written by rnnkit or torch.save",
        )
    if not head.startswith(_ZIP_MAGIC):
        _refuse_plain_pickle(path)
        raise corrupt(
            path,
            f"not a PyTorch file (it starts with the bytes {head!r})",
            "check that the path names a checkpoint written by rnnkit or torch.save",
        )
    _check_zip(path)


_BUILT = "an object built by its pickle"

_BUILDS = frozenset({"REDUCE", "OBJ", "NEWOBJ", "STACK_GLOBAL"})
"""Opcodes that build an object from a class the pickle imports."""

_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
"""The number torch's pre-1.6 format pickles first (``torch.serialization.MAGIC_NUMBER``)."""


def _starts_with_torch_magic(head: bytes) -> bool:
    """Whether the first pickle in ``head`` is torch's legacy magic number (read, not run)."""
    values: list[object] = []
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(head)):
            if opcode.name == "STOP":
                return values == [_TORCH_LEGACY_MAGIC]
            if opcode.name not in ("PROTO", "FRAME"):
                values.append(arg)
    except (ValueError, EOFError, UnicodeDecodeError, IndexError, KeyError):
        return False
    return False


def _pickled_global(data: bytes, allowed: frozenset[str] = frozenset()) -> str | None:
    """The first object class a raw pickle would import, read without unpickling anything.

    Only a pickle is asked. A binary pickle (protocol 2 or later, ``data`` starting with its
    PROTO opcode) counts as soon as a class is found, also in a file longer than ``data``;
    a text one must run to its end (``STOP``) within ``data``, so that text that happens to
    decode as a few opcodes (an error page, a CSV saved as a checkpoint) is not one.
    Classes in ``allowed`` are passed over, and then only a named class counts.
    """
    binary = data.startswith(_PICKLE_MAGIC)
    found: str | None = None
    strings: list[str] = []
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(data)):
            if isinstance(arg, str):
                strings = [*strings[-1:], arg]
            named = None
            if opcode.name in ("GLOBAL", "INST"):
                named = str(arg).replace(" ", ".")
            elif opcode.name == "STACK_GLOBAL" and len(strings) == 2:
                named = ".".join(strings)
            if found is None and named is not None and named not in allowed:
                found = named
            elif found is None and not allowed and opcode.name in _BUILDS:
                found = _BUILT
            if opcode.name == "STOP" or (binary and found not in (None, _BUILT)):
                return found  # a named class is enough; a bare build opcode may be noise
    except (ValueError, EOFError, UnicodeDecodeError, IndexError, KeyError):
        return None
    return None


def _refuse_plain_pickle(path: Path) -> None:
    """A plain pickle (no PyTorch container) that imports classes is foreign, not damaged."""
    with open(path, "rb") as handle:
        found = _pickled_global(handle.read(_SCAN_LIMIT))
    if found is not None:
        raise _refused_pickle(path, found)


def _check_zip(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            odd = next((i.filename for i in archive.infolist() if _not_a_file(i)), None)
            bad = archive.testzip() if odd is None else None
    except Exception as exc:  # any reader error (zlib, an unknown method, ...) means damage
        raise corrupt(path, f"truncated or damaged (its zip index is unreadable: {exc})") from exc
    if odd is not None:
        raise corrupt(path, f"damaged (its part {odd!r} is marked as a folder or encrypted)")
    if bad is not None:
        raise corrupt(path, f"damaged (the part {bad!r} fails its CRC check)")
    if not any(name.endswith("/data.pkl") or name == "data.pkl" for name in names):
        raise ForeignCheckpointError(
            f"Expected {str(path)!r} to be a PyTorch file, but it is a zip archive without "
            f"PyTorch's data.pkl. Hint: check that the path names a checkpoint."
        )


def _not_a_file(info: zipfile.ZipInfo) -> bool:
    """A part torch would not read as written: a folder entry, or an encrypted part.

    ``testzip`` checks neither, and torch reads a part flagged as a folder as 0 bytes: the
    weights would load as zeros or stale memory, without an error.
    """
    return info.is_dir() or bool(info.external_attr & 0x10) or bool(info.flag_bits & 0x1)


def _refused_pickle(path: Path, found: str) -> ForeignCheckpointError:
    return ForeignCheckpointError(
        f"Expected {str(path)!r} to hold only tensors and plain values, like every rnnkit "
        f"checkpoint, but it holds pickled Python objects ({found}), which a safe "
        f"weights_only=True load refuses. It was not written by rnnkit. Hint: only if you "
        f"trust its source, read it with torch.load(path, weights_only=False)."
    )


def _map_location_error(map_location: Any, why: str) -> CheckpointError:
    return CheckpointError(
        f"Expected `map_location` to name a device this machine has, but got "
        f"{map_location!r}: {why}. The file itself was not judged. Hint: pass "
        f"map_location='cpu' (the default), or a device listed by torch.cuda.device_count()."
    )


def _check_map_location(map_location: Any) -> None:
    """Refuse a device that does not exist here before reading the file."""
    if not isinstance(map_location, (str, torch.device)):
        return  # a dict or a function: torch applies it per storage
    try:
        device = torch.device(map_location)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise _map_location_error(map_location, f"not a device ({exc})") from exc
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise _map_location_error(map_location, f"this machine has {count} CUDA device(s)")


def torch_load(path: Path, map_location: Any) -> object:
    _check_map_location(map_location)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:  # the safe unpickler refused the content
        found = _GLOBAL_RE.search(str(exc))
        named = found.group(1) if found else _class_in(path)
        if named:
            raise _refused_pickle(path, named) from exc
        raise corrupt(  # e.g. a legacy file pickled with a protocol the safe unpickler lacks
            path,
            f"not readable by a safe weights_only load (torch.load: {_unpickler_reason(exc)})",
            "check that the path names a checkpoint written by rnnkit or torch.save",
        ) from exc
    except Exception as exc:
        if "deserialize object on" in str(exc) or "device" in str(exc).lower():
            raise _map_location_error(map_location, _first_line(exc)) from exc
        raise corrupt(
            path, f"truncated or damaged (torch.load failed: {_first_line(exc)})"
        ) from exc


def _class_in(path: Path) -> str | None:
    """The class the file's pickle (a zip's ``data.pkl``) would import, read, not run."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                if name is None:
                    return None
                with archive.open(name) as member:
                    return _pickled_global(member.read(_SCAN_LIMIT), _torch_allowed())
        with open(path, "rb") as handle:
            return _pickled_global(handle.read(_SCAN_LIMIT), _torch_allowed())
    except Exception:  # the file was checked before; a reader error names nothing
        return None


def _torch_allowed() -> frozenset[str]:
    """The classes torch's safe unpickler accepts (so they are not the reason it refused)."""
    try:
        from torch import _weights_only_unpickler

        return frozenset(_weights_only_unpickler._get_allowed_globals())
    except (ImportError, AttributeError):  # another torch: name the first class found
        return frozenset()


def _unpickler_reason(exc: BaseException) -> str:
    """What torch's message says is wrong, not its advice to load unsafely."""
    text = str(exc)
    _, marker, after = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in after.splitlines() if line.strip()] if marker else []
    return lines[0] if lines else _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
