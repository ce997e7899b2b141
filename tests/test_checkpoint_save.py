"""atomic_save: only plain values, the write protocol, and failed writes that lose nothing."""

from __future__ import annotations

import contextlib
import enum
import errno
import io
import math
import os
import signal
import stat
from collections import OrderedDict, defaultdict, namedtuple
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnkit
from rnnkit.errors import CheckpointValueError, CheckpointWriteError
from rnnkit.io import _atomic as safe_save
from rnnkit.io.checkpoint import (
    atomic_copy,
    atomic_save,
    check_plain,
)


def same(a: Any, b: Any) -> bool:
    """Recursive equality: same types, tensors bitwise equal with dtype, NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and bool((a == b).all() or a.numel() == 0)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


# -- only plain values ----------------------------------------------------------------------

DTYPES = [torch.float32, torch.float64, torch.int64, torch.uint8, torch.bool, torch.bfloat16]


def _tensor(shape: list[int], dtype: torch.dtype, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=generator) * 10).to(dtype)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.complex_numbers(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
tensors = st.builds(
    _tensor,
    st.lists(st.integers(0, 3), max_size=3),
    st.sampled_from(DTYPES),
    st.integers(0, 2**16),
)
plain = st.recursive(
    scalars | tensors,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=5) | st.integers(-5, 5), children, max_size=4)
        | st.dictionaries(st.text(max_size=5), children, max_size=4).map(OrderedDict)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plain")


@settings(max_examples=60, deadline=None)
@given(value=plain)
def test_everything_check_plain_accepts_round_trips_through_a_safe_load(
    scratch: Path, value: Any
) -> None:
    check_plain(value)
    atomic_save({"value": value}, scratch / "x.ckpt")
    loaded = torch.load(scratch / "x.ckpt", weights_only=True)["value"]
    assert same(value, loaded)


Point = namedtuple("Point", "x y")


class Color(enum.Enum):
    RED = 1


class TaggedTensor(torch.Tensor):
    pass


REJECTED: dict[str, tuple[object, str, str]] = {
    "ndarray": (np.zeros(3), "numpy.ndarray", "torch.from_numpy(value)"),
    "numpy scalar": (np.float64(0.5), "numpy.float64", "value.item()"),
    "namedtuple": (Point(1, 2), "Point", "dataclasses.asdict"),
    "enum": (Color.RED, "Color", "dataclasses.asdict"),
    "path": (Path("a"), "pathlib.PosixPath", "str(value)"),
    "defaultdict": (defaultdict(int), "collections.defaultdict", "dict(value)"),
    "set": ({1, 2}, "set", "sorted list"),
    "tensor subclass": (
        torch.zeros(2).as_subclass(TaggedTensor),
        "TaggedTensor",
        "value.as_subclass(torch.Tensor)",
    ),
    "object": (object(), "object", "dataclasses.asdict"),
}


@pytest.mark.skipif(os.name == "nt", reason="PosixPath is WindowsPath there")
@pytest.mark.parametrize(("value", "type_name", "hint"), REJECTED.values(), ids=REJECTED.keys())
def test_non_plain_value_is_refused_naming_its_key_path(
    tmp_path: Path, value: object, type_name: str, hint: str
) -> None:
    atomic_save({"step": 1}, tmp_path / "c.ckpt")
    checkpoint = {"format": "x", "trainer": {"rng": [{"seed": 1}, value]}}
    with pytest.raises(CheckpointValueError) as info:
        atomic_save(checkpoint, tmp_path / "c.ckpt")
    key_path = "checkpoint['trainer']['rng'][1]"
    assert info.value.key_path == key_path
    message = str(info.value)
    assert f"but {key_path} is a " in message
    assert type_name in message
    assert hint in message
    # nothing was written: the previous file is intact and no temporary file is left
    assert files_in(tmp_path) == ["c.ckpt"]
    assert torch.load(tmp_path / "c.ckpt", weights_only=True) == {"step": 1}


@pytest.mark.parametrize(
    "value",
    [np.zeros(3), np.float64(0.5), Point(1, 2), Color.RED, defaultdict(int)],
    ids=["ndarray", "numpy scalar", "namedtuple", "enum", "defaultdict"],
)
def test_refused_values_would_indeed_break_a_safe_load(value: object) -> None:
    buffer = io.BytesIO()
    torch.save({"value": value}, buffer)
    buffer.seek(0)
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(buffer, weights_only=True)


def test_bad_dict_key_and_self_reference_are_refused() -> None:
    with pytest.raises(CheckpointValueError) as info:
        check_plain({"trainer": {1.5: 2}})
    assert info.value.key_path == "checkpoint['trainer'][1.5]"
    assert "but checkpoint['trainer'] has the key 1.5, a float. Hint: use str(key)." in str(
        info.value
    )
    loop: list[object] = [1]
    loop.append(loop)
    with pytest.raises(CheckpointValueError, match=r"but checkpoint\[1\] contains itself"):
        check_plain(loop)


def test_shared_values_are_not_mistaken_for_loops() -> None:
    shared = [torch.ones(2)]
    check_plain({"a": shared, "b": shared, "c": [shared, shared]})


# -- the write protocol ---------------------------------------------------------------------


def test_atomic_save_replaces_the_previous_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "c.ckpt"
    atomic_save({"step": 1, "w": torch.zeros(3)}, path)
    atomic_save({"step": 2, "w": torch.ones(3)}, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded["step"] == 2
    assert torch.equal(loaded["w"], torch.ones(3))
    assert files_in(tmp_path) == ["c.ckpt"]


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_saved_file_gets_the_umask_permissions_of_a_normal_file(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_save({"step": 1}, tmp_path / "c.ckpt")
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "c.ckpt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o644


@pytest.mark.skipif(os.name == "nt", reason="folders cannot be fsynced on Windows")
def test_write_is_fsynced_then_renamed_then_the_folder_is_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        temporary = Path(src).name.startswith(".c.ckpt.") and Path(src).name.endswith(".tmp")
        events.append(f"replace {'temporary' if temporary else src} -> {Path(dst).name}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_save({"step": 1}, tmp_path / "c.ckpt")
    assert events == ["fsync file", "replace temporary -> c.ckpt", "fsync folder"]


def test_atomic_copy_copies_the_bytes(tmp_path: Path) -> None:
    atomic_save({"step": 3, "w": torch.arange(5)}, tmp_path / "a.ckpt")
    atomic_copy(tmp_path / "a.ckpt", tmp_path / "b.ckpt")
    assert (tmp_path / "b.ckpt").read_bytes() == (tmp_path / "a.ckpt").read_bytes()
    assert not (tmp_path / "b.ckpt").is_symlink()
    message = r"copy the checkpoint '.*missing\.ckpt' to '.*b\.ckpt': No such file.*must exist"
    with pytest.raises(CheckpointWriteError, match=message) as caught:
        atomic_copy(tmp_path / "missing.ckpt", tmp_path / "b.ckpt")
    assert "folder does not exist" not in str(caught.value)
    assert (tmp_path / "b.ckpt").read_bytes() == (tmp_path / "a.ckpt").read_bytes()
    assert files_in(tmp_path) == ["a.ckpt", "b.ckpt"]


# -- failed writes keep the previous checkpoint ---------------------------------------------


def _fail_midway(code: int) -> Any:
    """A torch.save that writes half the file, then fails as the OS would."""
    real_save = torch.save

    def save(obj: Any, handle: Any) -> None:
        buffer = io.BytesIO()
        real_save(obj, buffer)
        handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError(code, os.strerror(code))

    return save


def _raise(code: int) -> Any:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError(code, os.strerror(code))

    return fail


FAILURES = {
    "disk full while writing": (torch, "save", _fail_midway(errno.ENOSPC), "the disk is full"),
    "disk full at fsync": (os, "fsync", _raise(errno.ENOSPC), "the disk is full"),
    "disk full at rename": (os, "replace", _raise(errno.ENOSPC), "the disk is full"),
    "permission denied": (os, "open", _raise(errno.EACCES), "permission denied"),
    "read-only file system": (os, "open", _raise(errno.EROFS), "the file system is read-only"),
}


@pytest.mark.parametrize(("module", "name", "fake", "hint"), FAILURES.values(), ids=FAILURES)
def test_failed_write_raises_and_keeps_the_previous_checkpoint(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    module: Any,
    name: str,
    fake: Any,
    hint: str,
) -> None:
    path = tmp_path / "c.ckpt"
    atomic_save({"step": 1, "w": torch.zeros(1000)}, path)
    monkeypatch.setattr(module, name, fake)
    with pytest.raises(CheckpointWriteError) as info:
        atomic_save({"step": 2, "w": torch.ones(1000)}, path)
    monkeypatch.undo()
    assert isinstance(info.value, rnnkit.CheckpointError)
    assert isinstance(info.value.__cause__, OSError)
    message = str(info.value)
    assert message.startswith(f"Could not write the checkpoint {str(path)!r}: [Errno ")
    assert "The previous file at that path (if any) is unchanged." in message
    assert f"Hint: {hint}" in message
    assert files_in(tmp_path) == ["c.ckpt"]
    assert torch.load(path, weights_only=True)["step"] == 1


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the process is killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="POSIX file size limits")
def test_a_real_failed_write_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    """The kernel refuses the write (EFBIG, like a full disk refuses it with ENOSPC)."""
    path = tmp_path / "c.ckpt"
    atomic_save({"step": 1, "w": torch.zeros(10)}, path)
    with file_size_limit(64 * 1024), pytest.raises(CheckpointWriteError) as info:
        atomic_save({"step": 2, "w": torch.ones(1 << 18)}, path)
    assert getattr(info.value.__cause__, "errno", None) == errno.EFBIG
    assert "Hint: the file exceeds the allowed file size" in str(info.value)
    assert files_in(tmp_path) == ["c.ckpt"]
    assert torch.load(path, weights_only=True)["step"] == 1


def _chmod_blocks_writes(folder: Path) -> bool:
    probe = folder / "probe"
    try:
        probe.write_text("x")
    except PermissionError:
        return True
    probe.unlink()
    return False


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_read_only_folder_raises_and_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    atomic_save({"step": 1}, folder / "c.ckpt")
    folder.chmod(0o555)
    try:
        if not _chmod_blocks_writes(folder):
            pytest.skip("chmod does not stop this user (root) from writing")
        with pytest.raises(CheckpointWriteError, match=r"Hint: permission denied"):
            atomic_save({"step": 2}, folder / "c.ckpt")
    finally:
        folder.chmod(0o755)
    assert files_in(folder) == ["c.ckpt"]
    assert torch.load(folder / "c.ckpt", weights_only=True)["step"] == 1


def test_missing_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(CheckpointWriteError, match=r"Hint: the folder does not exist"):
        atomic_save({"step": 1}, tmp_path / "no" / "c.ckpt")


def test_keyboard_interrupt_mid_write_propagates_and_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.ckpt"
    atomic_save({"step": 1}, path)

    def interrupted(obj: Any, handle: Any) -> None:
        handle.write(b"PK\x03\x04partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"step": 2}, path)
    monkeypatch.undo()
    assert files_in(tmp_path) == ["c.ckpt"]
    assert torch.load(path, weights_only=True)["step"] == 1


def test_unsyncable_folder_after_the_rename_says_the_new_file_is_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(safe_save, "_fsync_dir", _raise(errno.EIO))
    with pytest.raises(CheckpointWriteError, match=r"The new file is in place, but the rename"):
        atomic_save({"step": 2}, tmp_path / "c.ckpt")
    monkeypatch.undo()
    assert torch.load(tmp_path / "c.ckpt", weights_only=True)["step"] == 2
