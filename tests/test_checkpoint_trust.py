"""A checkpoint is data: it never makes rnnkit touch files outside the run folder.

Also: kept files are never overwritten by a name collision or by another run sharing the
folder, ``load_model`` checks a config against the weights before allocating anything, and
each way a file can be wrong gets the error class that says what to do.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from rnnkit.callbacks import Callback, EarlyStopping, ModelCheckpoint
from rnnkit.errors import (
    CheckpointError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CheckpointWriteError,
    CorruptCheckpointError,
    ForeignCheckpointError,
)
from rnnkit.io.checkpoint import atomic_save, load_checkpoint, load_model, make_checkpoint
from rnnkit.io.run_folder import claim_folder
from rnnkit.models import SequenceClassifier
from rnnkit.models.encoder import RecurrentEncoder
from rnnkit.training.trainer import Trainer

# -- helpers ----------------------------------------------------------------------------------


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(16, 4, 3, generator=gen), torch.randint(0, 2, (16,), generator=gen)


def _fit(folder: Path, epochs: int, **kwargs: Any) -> Trainer:
    """A tiny real fit with a ModelCheckpoint keeping the 2 latest epochs in ``folder``."""
    options = {"save_top_k": 2, **kwargs.pop("checkpoint", {})}
    trainer = Trainer(max_epochs=epochs, batch_size=8, seed=0, progress=False)
    trainer.callbacks.append(ModelCheckpoint(folder, **options))
    torch.manual_seed(0)
    x, y = _data()
    trainer.fit(SequenceClassifier(3, 2, 4), (x, y), **kwargs)
    return trainer


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (recursively, links not followed) and its bytes."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            files[str(path.relative_to(folder))] = b"-> " + os.readlink(path).encode()
        elif path.is_file():
            files[str(path.relative_to(folder))] = path.read_bytes()
    return files


def _ckpt_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix == ".ckpt")


class _Fake:
    """What ModelCheckpoint uses of a Trainer; writes real checkpoints."""

    def __init__(self, callback: ModelCheckpoint) -> None:
        self.callbacks: list[Callback] = [callback]
        self.model = nn.Linear(2, 2)
        self.is_global_zero = True
        self.global_step = 0
        self.epoch = 0

    def save_checkpoint(self, path: str | Path) -> None:
        states = {type(cb).__name__: cb.state_dict() for cb in self.callbacks}
        atomic_save(make_checkpoint(self.model, {"epoch": self.epoch}, states), path)

    def run(self, scores: list[float], key: str = "score") -> None:
        callback = self.callbacks[0]
        callback.on_fit_start(self)
        for epoch, score in enumerate(scores):
            self.epoch, self.global_step = epoch, self.global_step + 1
            callback.on_epoch_end(self, epoch, {"loss": 1.0, key: score})


# -- paths inside a checkpoint are data ---------------------------------------------------------


def _craft(folder: Path, state: dict[str, Any]) -> Path:
    """A copy of ``folder/last.ckpt`` whose ModelCheckpoint state is replaced by ``state``."""
    checkpoint = load_checkpoint(folder / "last.ckpt")
    checkpoint["callbacks"]["ModelCheckpoint"].update(state)
    crafted = folder / "crafted.ckpt"
    atomic_save(checkpoint, crafted)
    return crafted


@pytest.mark.parametrize("where", ["absolute", "dotdot", "symlink", "absolute-in-folder-name"])
def test_no_checkpoint_content_makes_resume_touch_a_path_outside_the_folder(
    tmp_path: Path, where: str
) -> None:
    outside, run = tmp_path / "outside", tmp_path / "run"
    outside.mkdir()
    victim = outside / "victim.ckpt"
    victim.write_bytes(b"precious")
    _fit(run, epochs=2)
    named = {
        "absolute": str(victim),
        "dotdot": os.path.join(str(run), "..", "outside", "victim.ckpt"),
        "symlink": "link.ckpt",
        "absolute-in-folder-name": str(run / ".." / "outside" / "victim.ckpt"),
    }[where]
    if where == "symlink":
        (run / "link.ckpt").symlink_to(victim)
    # the crafted entries rank worst (oldest), so the next save would evict them
    crafted = _craft(
        run,
        {
            "best_k": {named: -5.0, "../outside/victim.ckpt": -4.0, str(victim): -3.0},
            "best_path": named,
            "last_written": named,
        },
    )
    before_outside = _snapshot(outside)
    before_root = sorted(p.name for p in tmp_path.iterdir())
    with pytest.warns(UserWarning, match="ModelCheckpoint"):
        _fit(run, epochs=5, resume_from=crafted)
    assert _snapshot(outside) == before_outside
    assert sorted(p.name for p in tmp_path.iterdir()) == before_root
    if where == "symlink":
        assert (run / "link.ckpt").is_symlink()  # not written by this run: never deleted


def test_restored_paths_never_point_outside_the_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside.ckpt"
    outside.write_bytes(b"x")
    callback = ModelCheckpoint(tmp_path / "run")
    with pytest.warns(UserWarning, match="outside"):
        callback.load_state_dict(
            {"best_k": {str(outside): 1.0}, "best_path": str(outside), "last_written": "../x"}
        )
    assert callback.best_k == {}
    assert callback.best_path is None
    assert callback.last_path is None  # resume_from="last" never reads outside.ckpt


def test_resuming_into_a_new_folder_keeps_the_first_runs_files(tmp_path: Path) -> None:
    _fit(tmp_path / "runA", epochs=3)
    before = _snapshot(tmp_path / "runA")
    assert len(_ckpt_names(tmp_path / "runA")) == 3  # 2 kept epochs and last.ckpt
    _fit(tmp_path / "runB", epochs=6, resume_from=tmp_path / "runA" / "last.ckpt")
    assert _snapshot(tmp_path / "runA") == before
    assert len(_ckpt_names(tmp_path / "runB")) == 3


def test_resuming_the_same_run_in_its_folder_keeps_ranking(tmp_path: Path) -> None:
    _fit(tmp_path / "run", epochs=2)
    trainer = _fit(tmp_path / "run", epochs=4, resume_from="last")
    names = _ckpt_names(tmp_path / "run")
    assert names == ["epoch=002-step=6.ckpt", "epoch=003-step=8.ckpt", "last.ckpt"]
    assert len(trainer.history) == 4


# -- names never collide --------------------------------------------------------------------------


def test_a_template_that_repeats_a_name_never_overwrites_a_kept_file(tmp_path: Path) -> None:
    callback = ModelCheckpoint(
        tmp_path, monitor="score", mode="min", save_top_k=2, filename="best-{score:.1f}"
    )
    fake = _Fake(callback)
    fake.run([0.50, 0.54])
    kept = sorted(Path(path).name for path in callback.best_k)
    assert len(kept) == 2
    assert callback.best_path is not None
    assert load_checkpoint(callback.best_path)["trainer"]["epoch"] == 0
    assert {load_checkpoint(tmp_path / name)["trainer"]["epoch"] for name in kept} == {0, 1}


# -- one folder, one run --------------------------------------------------------------------------


def test_a_second_run_in_the_same_folder_is_refused_before_training(tmp_path: Path) -> None:
    _fit(tmp_path / "run", epochs=2)
    before = _snapshot(tmp_path / "run")
    with pytest.raises(CheckpointError, match=r"another run.*overwrite=True"):
        _fit(tmp_path / "run", epochs=2)
    assert _snapshot(tmp_path / "run") == before


def test_a_second_fit_of_the_same_trainer_in_the_same_folder_is_refused(tmp_path: Path) -> None:
    trainer = _fit(tmp_path / "run", epochs=2)
    before = _snapshot(tmp_path / "run")
    x, y = _data()
    with pytest.raises(CheckpointError, match="another run"):
        trainer.fit(SequenceClassifier(3, 2, 4), (x, y))
    assert _snapshot(tmp_path / "run") == before


def test_two_runs_at_once_in_one_folder_the_second_is_refused(tmp_path: Path) -> None:
    first, second = ModelCheckpoint(tmp_path), ModelCheckpoint(tmp_path)
    first.on_fit_start(_Fake(first))  # the first run is alive and has written nothing yet
    with pytest.raises(CheckpointError, match="another run"):
        second.on_fit_start(_Fake(second))


@pytest.mark.parametrize(
    "marker",
    [
        b"",
        b'{"run": "r1", "pid": 1180591620717411303424, "host": "HOST"}',
        b'{"run": "r1", "pid": 0, "host": "HOST"}',
        b'{"run": "r1", "pid": -1, "host": "HOST"}',
    ],
)
def test_a_folder_whose_marker_names_no_live_run_is_taken_over(
    tmp_path: Path, marker: bytes
) -> None:
    folder = tmp_path / "run"
    folder.mkdir()  # left by a crash: an empty marker, or one naming an impossible process
    (folder / ".rnnkit-run").write_bytes(marker.replace(b"HOST", socket.gethostname().encode()))
    trainer = _fit(folder, epochs=1)
    assert trainer.history[-1]["epoch"] == 0
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == [".rnnkit-run"]


def test_overwrite_takes_the_folder_over_and_deletes_nothing_of_the_first_run(
    tmp_path: Path,
) -> None:
    _fit(tmp_path / "run", epochs=2, checkpoint={"save_top_k": 1})
    old = [n for n in _ckpt_names(tmp_path / "run") if n != "last.ckpt"]
    old_bytes = {n: (tmp_path / "run" / n).read_bytes() for n in old}
    _fit(tmp_path / "run", epochs=3, checkpoint={"save_top_k": 1, "overwrite": True})
    for name, data in old_bytes.items():
        assert (tmp_path / "run" / name).read_bytes() == data
    assert load_checkpoint(tmp_path / "run" / "last.ckpt")["trainer"]["epoch"] == 3


# -- arguments are checked when the callback is made --------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filename": "{epoch:q}"}, r"format spec"),
        ({"filename": "{val_loss:d}"}, r"format spec"),
        ({"filename": "{val_loss.real}"}, r"plain field names"),
        ({"filename": "{}"}, r"plain field names"),
        ({"filename": "{val_loss:/>9}"}, r"without '/'"),
    ],
)
def test_bad_arguments_are_refused_at_construction(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ModelCheckpoint(tmp_path, **kwargs)


def test_a_bad_dirpath_type_is_refused_at_construction() -> None:
    with pytest.raises(TypeError, match=r"`dirpath` to be a str or os.PathLike"):
        ModelCheckpoint(None)  # type: ignore[arg-type]


# -- load_model checks the config before building ---------------------------------------------


def _tampered(tmp_path: Path, **config: Any) -> Path:
    torch.manual_seed(0)
    model = SequenceClassifier(3, 2, 8)
    checkpoint = make_checkpoint(model, {}, {})
    checkpoint["model"]["config"].update(config)
    path = tmp_path / "tampered.ckpt"
    atomic_save(checkpoint, path)
    return path


def test_a_config_that_disagrees_with_the_weights_allocates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _tampered(tmp_path, hidden_size=3000)
    devices: list[str] = []
    original = RecurrentEncoder.__init__

    def spy(self: RecurrentEncoder, *args: Any, **kwargs: Any) -> None:
        devices.append(torch.empty(0).device.type)
        original(self, *args, **kwargs)

    monkeypatch.setattr(RecurrentEncoder, "__init__", spy)
    with pytest.raises(CheckpointMismatchError, match=r"hidden_size.*weight_hh_l0"):
        load_model(path)
    assert "cpu" not in devices  # only checked on the meta device, never built for real


def test_a_huge_config_over_small_weights_is_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(CheckpointMismatchError, match=r"\(8, 3\)"):
        load_model(_tampered(tmp_path, hidden_size=100_000))
    with pytest.raises(CheckpointMismatchError, match=r"num_layers"):
        load_model(_tampered(tmp_path, num_layers=10**9))
    with pytest.raises(CheckpointError, match="torch can build"):  # the element count overflows
        load_model(_tampered(tmp_path, hidden_size=4_000_000_000))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"hidden_size": "8"}, r"config\['hidden_size'\] is a str '8'.*int"),
        ({"num_layers": True}, r"config\['num_layers'\] is a bool"),
        ({"cell": "transformer"}, r"config\['cell'\] is 'transformer'.*'rnn', 'lstm'"),
        ({"dropout": None}, r"config\['dropout'\] is a NoneType"),
        ({"colour": "red"}, r"unknown.*colour"),
    ],
)
def test_a_config_with_wrong_value_types_is_a_checkpoint_error(
    tmp_path: Path, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(CorruptCheckpointError, match=message):
        load_model(_tampered(tmp_path, **config))


# -- each bad file gets the right error -------------------------------------------------------


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.remove, (str(self.marker),))


@pytest.mark.parametrize(
    "kind",
    ["zip", "legacy", "raw-protocol-5", "raw-protocol-4", "raw-protocol-2", "raw-protocol-0"],
)
def test_a_malicious_pickle_is_foreign_not_corrupt(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "must-survive"
    marker.write_text("x")
    path, payload = tmp_path / "evil.ckpt", {"format": "rnnkit-checkpoint", "x": _RunsCode(marker)}
    if kind == "zip":
        torch.save(payload, path)
    elif kind == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=int(kind[-1])))
    with pytest.raises(ForeignCheckpointError, match=r"posix\.remove|os\.remove|nt\.remove"):
        load_checkpoint(path)
    assert marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_a_malicious_pickle_longer_than_the_scan_is_foreign(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "must-survive"
    marker.write_text("x")
    payload = [_RunsCode(marker), "A" * (2 << 20)]  # the class first, then over 1 MiB
    (tmp_path / "big.ckpt").write_bytes(pickle.dumps(payload, protocol=protocol))
    with pytest.raises(ForeignCheckpointError, match=r"posix\.remove|os\.remove|nt\.remove"):
        load_checkpoint(tmp_path / "big.ckpt")
    assert marker.exists()


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_torch_file_its_safe_loader_cannot_read_is_corrupt_with_torchs_reason(
    tmp_path: Path, zip_format: bool
) -> None:
    from collections import OrderedDict

    payload = {"w": torch.ones(2), "od": OrderedDict(a=torch.zeros(1))}  # torch's own classes
    path = tmp_path / "p4.ckpt"
    torch.save(payload, path, pickle_protocol=4, _use_new_zipfile_serialization=zip_format)
    with (
        pytest.raises(CorruptCheckpointError, match="Unsupported operand") as info,
        pytest.warns(UserWarning, match="pickle protocol 4"),  # torch's own note
    ):
        load_checkpoint(path)
    assert "weights_only set to False" not in str(info.value)


def test_an_inst_pickle_inside_a_zip_is_foreign_and_named(tmp_path: Path) -> None:
    import zipfile

    atomic_save(make_checkpoint(nn.Linear(2, 2), {}, {}), tmp_path / "ok.ckpt")
    with zipfile.ZipFile(tmp_path / "ok.ckpt") as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    pkl = next(name for name in parts if name.endswith("data.pkl"))
    parts[pkl] = b"(S'x'\niposix\nremove\n."  # protocol 0: INST imports posix.remove
    with zipfile.ZipFile(tmp_path / "inst.ckpt", "w") as out:
        for name, data in parts.items():
            out.writestr(name, data)
    with pytest.raises(ForeignCheckpointError, match=r"posix\.remove"):
        load_checkpoint(tmp_path / "inst.ckpt")


@pytest.mark.parametrize(
    "text", [b"Not Found", b"hello world", pickle.dumps({"a": 1}, 5), b"\x80\x02R\xff\xfe junk"]
)
def test_text_or_a_plain_pickle_is_not_a_pytorch_file_not_a_foreign_one(
    tmp_path: Path, text: bytes
) -> None:
    (tmp_path / "page.ckpt").write_bytes(text)  # e.g. a failed download's error page
    with pytest.raises(CorruptCheckpointError, match="not a PyTorch file"):
        load_checkpoint(tmp_path / "page.ckpt")


@pytest.mark.parametrize("protocol", [2, 3])
def test_torchs_legacy_format_still_loads(tmp_path: Path, protocol: int) -> None:
    checkpoint = make_checkpoint(nn.Linear(2, 2), {}, {})
    path = tmp_path / "legacy.ckpt"
    torch.save(checkpoint, path, _use_new_zipfile_serialization=False, pickle_protocol=protocol)
    with contextlib.ExitStack() as stack:
        if protocol != 2:  # torch's own note; the file still loads
            stack.enter_context(pytest.warns(UserWarning, match="pickle protocol 3"))
        loaded = load_checkpoint(path)
    saved = checkpoint["model"]["state_dict"]["weight"]
    assert torch.equal(loaded["model"]["state_dict"]["weight"], saved)


def test_a_large_text_file_is_not_called_a_pickle(tmp_path: Path) -> None:
    rows = "".join(f"city{i},{i}\n" for i in range(300_000))  # over the 1 MiB scanned
    (tmp_path / "cities.ckpt").write_text("city,population\n" + rows)
    with pytest.raises(CorruptCheckpointError, match="not a PyTorch file"):
        load_checkpoint(tmp_path / "cities.ckpt")


def _patched(source: Path, out: Path, field: str, value: int) -> Path:
    """A copy of a torch zip with one field of its weights part's central entry changed."""
    data = bytearray(source.read_bytes())
    offsets = {"flag_bits": (8, 2), "compress_type": (10, 2), "external_attr": (38, 4)}
    start = 0
    while (start := data.find(b"PK\x01\x02", start + 1)) != -1:  # each central entry
        name_len = int.from_bytes(data[start + 28 : start + 30], "little")
        if bytes(data[start + 46 : start + 46 + name_len]).endswith(b"/data/0"):
            at, size = offsets[field]
            data[start + at : start + at + size] = value.to_bytes(size, "little")
            out.write_bytes(bytes(data))
            return out
    raise AssertionError("no weights part found")


@pytest.mark.parametrize(
    ("field", "value"),
    [("external_attr", 0x10), ("compress_type", 99), ("compress_type", 8), ("flag_bits", 0x809)],
)
def test_a_weights_part_with_odd_zip_fields_is_corrupt_not_zeros(
    tmp_path: Path, field: str, value: int
) -> None:
    atomic_save(make_checkpoint(nn.Linear(2, 2), {}, {}), tmp_path / "ok.ckpt")
    odd = _patched(tmp_path / "ok.ckpt", tmp_path / "odd.ckpt", field, value)
    with pytest.raises(CorruptCheckpointError, match="damaged"):
        load_checkpoint(odd)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_map_location_cuda_without_cuda_is_named_not_corrupt(tmp_path: Path) -> None:
    atomic_save(make_checkpoint(nn.Linear(2, 2), {}, {}), tmp_path / "ok.ckpt")
    with pytest.raises(CheckpointError, match=r"map_location") as info:
        load_checkpoint(tmp_path / "ok.ckpt", map_location="cuda")
    assert not isinstance(info.value, CorruptCheckpointError)
    with pytest.raises(CheckpointError, match=r"map_location"):
        load_checkpoint(tmp_path / "ok.ckpt", map_location="no-such-device")


def _load_in_thread(path: Path) -> BaseException | None:
    caught: list[BaseException] = []

    def target() -> None:
        try:
            load_checkpoint(path)
        except BaseException as exc:
            caught.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "load_checkpoint blocked on a special file"
    return caught[0] if caught else None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_or_device_is_refused_without_reading_it(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.ckpt"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        if not path.exists():
            continue
        error = _load_in_thread(path)
        assert isinstance(error, CheckpointNotFoundError), error
        assert "folder" not in str(error)
        assert "not a regular file" in str(error)


def _damaged(path: Path, out: Path, part: str) -> Path:
    """A copy of the checkpoint ``path`` whose trainer state is damaged at ``part``."""
    checkpoint = load_checkpoint(path)
    trainer = checkpoint["trainer"]
    if part == "history":
        trainer["history"] = {"junk": 1}
    elif part == "rng":
        trainer["rng"] = {}
    elif part == "rank_rng":
        trainer["rank_rng"] = [{"torch": torch.zeros(3)}]
    else:
        trainer["optimizer"]["param_groups"][0]["lr"] = "x"
    atomic_save(checkpoint, out)
    return out


@pytest.mark.parametrize("part", ["history", "rng", "rank_rng", "lr"])
def test_a_damaged_trainer_state_is_refused_with_the_model_as_it_was(
    tmp_path: Path, part: str
) -> None:
    _fit(tmp_path / "run", 1)
    damaged = _damaged(tmp_path / "run" / "last.ckpt", tmp_path / "damaged.ckpt", part)
    torch.manual_seed(7)
    model = SequenceClassifier(3, 2, 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(max_epochs=2, batch_size=8, progress=False, default_root_dir=tmp_path)
    with pytest.raises(CheckpointError, match=r"Trainer state|'rank_rng'|setting 'lr'"):
        trainer.fit(model, _data(), resume_from=damaged)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize(
    ("part", "message"),
    [
        ("wait", "EarlyStopping state with numbers"),
        ("best_epoch", "EarlyStopping state with numbers"),
        ("best_weights", "best weights to fit"),
    ],
)
def test_a_damaged_early_stopping_state_is_refused_before_training(
    tmp_path: Path, part: str, message: str
) -> None:
    def trainer() -> Trainer:
        stopping = EarlyStopping("loss", patience=5, restore_best_weights=True)
        callbacks: list[Callback] = [ModelCheckpoint(tmp_path / "run"), stopping]
        return Trainer(max_epochs=3, batch_size=8, progress=False, callbacks=callbacks)

    torch.manual_seed(0)
    trainer().fit(SequenceClassifier(3, 2, 4), _data())
    checkpoint = load_checkpoint(tmp_path / "run" / "last.ckpt")
    state = checkpoint["callbacks"]["EarlyStopping"]
    bad: dict[str, Any] = {"wait": "x", "best_epoch": float("inf")}
    state[part] = bad.get(part, {"junk": torch.zeros(2)})
    atomic_save(checkpoint, tmp_path / "damaged.ckpt")
    model = SequenceClassifier(3, 2, 4)
    before, files = model.state_dict(), _snapshot(tmp_path / "run")
    before = {k: v.clone() for k, v in before.items()}
    with pytest.raises(ValueError, match=message):
        trainer().fit(model, _data(), resume_from=tmp_path / "damaged.ckpt")
    assert _snapshot(tmp_path / "run") == files  # refused before any epoch trained
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_a_marker_that_cannot_be_written_is_a_write_error_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CheckpointWriteError, match=r"run marker.*No space left"):
        claim_folder(tmp_path, "r1", replace=False)
    assert list(tmp_path.iterdir()) == []

    def no_links(source: object, target: object) -> None:
        raise OSError(1, "Operation not permitted")  # a file system without hard links

    monkeypatch.setattr(os, "link", no_links)
    calls = iter([None, OSError(28, "No space left on device")])

    def second_full(fd: int) -> None:
        error = next(calls)
        if error is not None:
            raise error

    monkeypatch.setattr(os, "fsync", second_full)
    with pytest.raises(CheckpointWriteError, match=r"run marker.*No space left"):
        claim_folder(tmp_path, "r1", replace=False)
    assert list(tmp_path.iterdir()) == []


class _CountsCalls(SequenceClassifier):
    """A model with extra state that is not a tensor (a dict)."""

    calls = 3

    def get_extra_state(self) -> dict[str, int]:
        return {"calls": self.calls}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.calls = state["calls"]


def test_a_model_with_non_tensor_extra_state_resumes(tmp_path: Path) -> None:
    def fit(epochs: int, **kwargs: Any) -> Trainer:
        trainer = Trainer(max_epochs=epochs, batch_size=8, progress=False, seed=0)
        trainer.callbacks.append(ModelCheckpoint(tmp_path / "run"))
        trainer.fit(_CountsCalls(3, 2, 4), _data(), **kwargs)
        return trainer

    fit(1)
    assert len(fit(2, resume_from="last").history) == 2


def test_a_changed_optimizer_setting_of_a_compatible_kind_warns_and_is_not_damage() -> None:
    from rnnkit.training._resume_checks import _check_hyperparameters

    unset: Any = None
    saved: list[Mapping[str, Any]] = [
        {"params": [0], "lr": 0.1, "nesterov": True, "line_search_fn": unset}
    ]
    fresh: list[Mapping[str, Any]] = [
        {"params": [0], "lr": 0.1, "nesterov": 1, "line_search_fn": "strong_wolfe"}
    ]
    with pytest.warns(UserWarning, match="line_search_fn=None"):
        _check_hyperparameters(saved, fresh)
    for damaged in ("x", None):  # None is an unset setting only where no number belongs
        with pytest.raises(CheckpointError, match="setting 'lr' in parameter group 0 to be a"):
            _check_hyperparameters([{**saved[0], "lr": damaged}], fresh)
