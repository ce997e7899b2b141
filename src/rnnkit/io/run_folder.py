"""A run folder: which run owns it, and which file names from a checkpoint are safe in it.

A checkpoint's content is data, never an instruction: a file name read from one is used only
when it is a plain ``.ckpt`` name directly inside the folder (no separator, no ``..``, not
hidden, not ``last.ckpt``), and a file is deleted only when it is a regular file (never a
symlink, a folder or a device). A small marker file ``.rnnkit-run`` names the run that writes
the folder, so that two runs never overwrite or delete each other's files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import stat
import warnings
from pathlib import Path
from typing import TypeGuard

from rnnkit.errors import CheckpointError, CheckpointWriteError
from rnnkit.io._atomic import _atomic_write, _Writer

__all__ = [
    "LAST_NAME",
    "MARKER_NAME",
    "RunOwner",
    "checkpoint_names",
    "claim_folder",
    "folder_has_checkpoints",
    "new_run_id",
    "ranked_files",
    "read_owner",
    "remove_kept_file",
    "safe_name",
]

logger = logging.getLogger("rnnkit")

LAST_NAME = "last.ckpt"
MARKER_NAME = ".rnnkit-run"
_MARKER_LIMIT = 1024  # bytes: a marker is tiny; never read more of an untrusted file


def new_run_id() -> str:
    """A fresh random run identifier."""
    return secrets.token_hex(8)


def _is_plain_name(value: object) -> TypeGuard[str]:
    """A plain ``.ckpt`` name inside the folder: no separator, not hidden, not ``last.ckpt``."""
    return (
        isinstance(value, str)
        and value == os.path.basename(value)
        and "/" not in value
        and "\\" not in value
        and "\x00" not in value
        and not value.startswith(".")
        and value.endswith(".ckpt")
        and value != LAST_NAME
    )


def ranked_files(folder: Path) -> list[str]:
    """The names of the ranked checkpoint files directly inside ``folder``, sorted.

    A ranked file is a plain ``.ckpt`` name (see :func:`safe_name`) of a regular file: a
    symlink, folder or device is never listed, so nothing outside ``folder`` is reached
    through it. A missing folder has none.
    """
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if _is_plain_name(e.name) and _is_regular(e)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(names)


def _is_regular(entry: os.DirEntry[str]) -> bool:
    try:
        return stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode)
    except FileNotFoundError:  # removed while the folder was read
        return False


def safe_name(value: object, *, what: str) -> str | None:
    """``value`` when it is a plain checkpoint file name, else ``None`` (with a warning).

    Args:
        value: A name read from a checkpoint (untrusted).
        what: Where it was found, for the warning.

    Returns:
        The name, or ``None`` when it could name a file outside the folder or not ours.
    """
    if value is None:
        return None
    if _is_plain_name(value):
        return value
    warnings.warn(
        f"ModelCheckpoint ignored {what} = {value!r} from the checkpoint: a kept file must be "
        f"a plain '.ckpt' name inside the checkpoint folder, and this could name a path "
        f"outside it. The file (if any) is left untouched.",
        UserWarning,
        stacklevel=3,
    )
    return None


class RunOwner:
    """What a folder's marker says: the run id and the process that wrote it.

    Args:
        run_id: The owning run ("" when the marker is unreadable or empty).
        pid: Its process id, or ``None``.
        host: Its host name, or ``None``.
    """

    def __init__(self, run_id: str, pid: int | None = None, host: str | None = None) -> None:
        self.run_id = run_id
        self.pid = pid
        self.host = host

    def is_alive_here(self) -> bool:
        """Whether the owner is a running process on this machine (unknown counts as alive).

        An unreadable or empty marker names no run, so no running owner: markers are written
        whole (see :func:`claim_folder`), and such a one is left by a crash or damage.
        """
        if not self.run_id or (self.pid is not None and self.pid <= 0):  # no process has it
            return False
        if self.pid is None or self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except (ProcessLookupError, OverflowError, ValueError):  # gone, or no valid pid
            return False
        except OSError:  # exists, but belongs to another user
            return True
        return True


def read_owner(folder: Path) -> RunOwner | None:
    """The owner named by ``folder``'s marker, or ``None`` when there is no marker.

    Raises:
        rnnkit.errors.CheckpointError: The marker is not a regular file.
    """
    marker = folder / MARKER_NAME
    try:
        info = os.lstat(marker)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(
            f"Expected {str(marker)!r} to be a regular file (the marker of the run that owns "
            f"the folder), but it is not. Hint: remove it, or use another `dirpath`."
        )
    with open(marker, "rb") as handle:
        data = handle.read(_MARKER_LIMIT)
    return _parse_owner(data)


def _parse_owner(data: bytes) -> RunOwner:
    try:
        fields = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return RunOwner("")
    if not isinstance(fields, dict):
        return RunOwner("")
    run_id, pid, host = fields.get("run"), fields.get("pid"), fields.get("host")
    return RunOwner(
        run_id if isinstance(run_id, str) else "",
        pid if type(pid) is int else None,
        host if isinstance(host, str) else None,
    )


def _marker_bytes(run_id: str) -> bytes:
    fields = {"run": run_id, "pid": os.getpid(), "host": socket.gethostname()}
    return json.dumps(fields).encode("utf-8")


def claim_folder(folder: Path, run_id: str, *, replace: bool) -> RunOwner | None:
    """Write ``folder``'s marker naming ``run_id``.

    Args:
        folder: The run folder (it exists).
        run_id: The run taking the folder.
        replace: Replace an existing marker (atomically); otherwise create it only when
            absent (exclusively, so of two runs starting at once only one succeeds).

    Returns:
        ``None`` on success; the existing owner when ``replace`` is false and a marker exists.
    """
    marker = folder / MARKER_NAME
    data = _marker_bytes(run_id)
    if replace:

        def write(handle: _Writer) -> None:
            handle.write(data)

        _atomic_write(marker, write)
        return None
    # Written whole to a private name, then linked in: exclusive like O_EXCL, and a reader
    # never sees a marker half written.
    temporary = folder / f".{MARKER_NAME}.{secrets.token_hex(8)}.tmp"
    _write_synced(temporary, data)
    try:
        os.link(temporary, marker)
    except FileExistsError:
        return read_owner(folder) or RunOwner("")
    except OSError:  # a file system without hard links: create exclusively, then write
        return _create_marker(folder, data)
    finally:
        temporary.unlink(missing_ok=True)
    return None


def _create_marker(folder: Path, data: bytes) -> RunOwner | None:
    try:
        fd = os.open(folder / MARKER_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return read_owner(folder) or RunOwner("")
    _write_synced(folder / MARKER_NAME, data, fd)
    return None


def _write_synced(path: Path, data: bytes, fd: int | None = None) -> None:
    """Write ``data`` to the new file ``path`` (or its open ``fd``) and sync it to disk.

    On failure the half-written file is removed.

    Raises:
        rnnkit.errors.CheckpointWriteError: The write or the sync failed.
    """
    try:
        with open(path, "xb") if fd is None else os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)  # a half-written marker names no one
        raise CheckpointWriteError(
            f"Could not write the run marker of {str(path.parent)!r}: {exc}. Hint: check the "
            "free space and the permissions of the folder."
        ) from exc


def checkpoint_names(folder: Path) -> list[str]:
    """The ``.ckpt`` files directly inside ``folder`` (hidden temporary files aside), sorted."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.name.endswith(".ckpt") and e.name[:1] != ".")


def folder_has_checkpoints(folder: Path) -> bool:
    """Whether ``folder`` directly holds a ``.ckpt`` file (hidden temporary files aside)."""
    return bool(checkpoint_names(folder))


def remove_kept_file(folder: Path, name: str) -> None:
    """Delete ``folder/name`` when it is a regular file; leave anything else with a warning."""
    path = folder / name
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        warnings.warn(
            f"ModelCheckpoint did not delete {str(path)!r}: it is not a regular file (a "
            f"symlink, folder or device), so this run did not write it.",
            UserWarning,
            stacklevel=3,
        )
        return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
