"""ModelCheckpoint: top-k bookkeeping, last.ckpt, safe eviction, resume of its own state."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.callbacks import Callback, ModelCheckpoint
from rnnkit.errors import CheckpointWriteError
from rnnkit.io.checkpoint import (
    atomic_save,
    load_checkpoint,
    load_model,
    make_checkpoint,
)
from rnnkit.models import SequenceClassifier
from rnnkit.training.trainer import Trainer


class FakeTrainer:
    """What ModelCheckpoint uses of a Trainer; saves real checkpoints and records each save."""

    def __init__(self, callbacks: list[Callback], *, rank_zero: bool = True) -> None:
        self.model = nn.Linear(2, 2)
        self.callbacks = callbacks
        self.is_global_zero = rank_zero
        self.global_step = 0
        self.epoch = 0
        self.fail_at_epoch: int | None = None
        self.saves: list[tuple[str, list[str]]] = []  # (file, files present at that moment)

    def save_checkpoint(self, path: str | Path) -> None:
        path = Path(path)
        self.saves.append((path.name, sorted(p.name for p in path.parent.iterdir())))
        if self.epoch == self.fail_at_epoch:
            raise CheckpointWriteError(f"Could not write the checkpoint {str(path)!r}: full.")
        states = {type(cb).__name__: cb.state_dict() for cb in self.callbacks}
        state = {"epoch": self.epoch, "global_step": self.global_step}
        atomic_save(make_checkpoint(self.model, state, states), path)

    def run(self, scores: list[float], start: int = 0, key: str = "val_loss") -> None:
        for epoch, score in enumerate(scores, start):
            self.epoch = epoch
            self.global_step += 10
            for callback in self.callbacks:
                callback.on_epoch_end(self, epoch, {"loss": 1.0, key: score})


def fit(callback: ModelCheckpoint, scores: list[float], **kwargs: Any) -> FakeTrainer:
    trainer = FakeTrainer([callback], **kwargs)
    callback.on_fit_start(trainer)
    trainer.run(scores)
    return trainer


def on_disk(folder: Path) -> list[str]:
    """The files in ``folder``, without the run's marker ``.rnnkit-run``."""
    return sorted(path.name for path in folder.iterdir() if path.name != ".rnnkit-run")


def name(epoch: int) -> str:
    return f"epoch={epoch:03d}-step={10 * (epoch + 1)}.ckpt"


def saved_epoch(path: Path) -> int:
    return int(load_checkpoint(path)["trainer"]["epoch"])


# -- ranking ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("k", [1, 2, 3, -1])
def test_keeps_exactly_the_top_k_epochs(tmp_path: Path, mode: str, k: int) -> None:
    rng = random.Random(k)
    scores = [rng.random() for _ in range(8)]
    callback = ModelCheckpoint(tmp_path, monitor="val_loss", mode=mode, save_top_k=k)  # type: ignore[arg-type]
    fit(callback, scores)
    # brute force: the k best of all epochs
    order = sorted(range(8), key=lambda e: scores[e], reverse=mode == "max")
    best = order if k == -1 else order[:k]
    assert on_disk(tmp_path) == sorted([name(e) for e in best] + ["last.ckpt"])
    assert callback.best_path == tmp_path / name(order[0])
    assert callback.best_score == scores[order[0]]
    assert callback.best_k == {str(tmp_path / name(e)): scores[e] for e in best}
    for epoch in best:
        assert saved_epoch(tmp_path / name(epoch)) == epoch
    assert saved_epoch(tmp_path / "last.ckpt") == 7


def test_an_evicted_file_is_removed_only_after_the_new_one_is_written(tmp_path: Path) -> None:
    callback = ModelCheckpoint(tmp_path, monitor="val_loss", save_top_k=1, save_last=False)
    trainer = fit(callback, [0.5, 0.4, 0.3])
    assert [file for file, _ in trainer.saves] == [name(0), name(1), name(2)]
    # when epoch e's file was being written, epoch e-1's (the one it replaces) was still there
    for epoch in (1, 2):
        assert name(epoch - 1) in trainer.saves[epoch][1]
    assert on_disk(tmp_path) == [name(2)]


def test_a_failed_save_keeps_the_files_and_the_bookkeeping(tmp_path: Path) -> None:
    callback = ModelCheckpoint(tmp_path, monitor="val_loss", save_top_k=1)
    trainer = FakeTrainer([callback])
    trainer.fail_at_epoch = 2
    with pytest.raises(CheckpointWriteError):
        trainer.run([0.5, 0.4, 0.3])
    assert on_disk(tmp_path) == sorted([name(1), "last.ckpt"])
    assert callback.best_path == tmp_path / name(1)
    assert callback.best_score == 0.4
    assert callback.best_k == {str(tmp_path / name(1)): 0.4}
    assert saved_epoch(tmp_path / name(1)) == 1
    assert saved_epoch(tmp_path / "last.ckpt") == 1


def test_without_monitor_it_keeps_the_most_recent_epochs(tmp_path: Path) -> None:
    callback = ModelCheckpoint(tmp_path, save_top_k=2)
    fit(callback, [0.1, 0.9, 0.5, 0.7, 0.3])
    assert on_disk(tmp_path) == sorted([name(3), name(4), "last.ckpt"])
    assert callback.best_path == tmp_path / name(4)


def test_every_n_epochs(tmp_path: Path) -> None:
    callback = ModelCheckpoint(tmp_path, save_top_k=-1, every_n_epochs=2)
    trainer = fit(callback, [0.1] * 5)
    assert [file for file, _ in trainer.saves] == [name(1), name(3)]
    assert on_disk(tmp_path) == sorted([name(1), name(3), "last.ckpt"])


def test_nan_ranks_worst(tmp_path: Path) -> None:
    callback = ModelCheckpoint(tmp_path, monitor="val_loss", save_top_k=1, save_last=False)
    fit(callback, [math.nan, 0.9])  # a free slot takes the NaN, the first number replaces it
    assert on_disk(tmp_path) == [name(1)]
    later = ModelCheckpoint(tmp_path / "b", monitor="val_loss", save_top_k=1, save_last=False)
    fit(later, [0.9, math.nan])
    assert on_disk(tmp_path / "b") == [name(0)]
    assert later.best_score == 0.9


def test_only_rank_zero_writes(tmp_path: Path) -> None:
    callback = ModelCheckpoint(tmp_path / "ckpt", monitor="val_loss")
    trainer = fit(callback, [0.5, 0.4], rank_zero=False)
    assert trainer.saves == []
    assert not (tmp_path / "ckpt").exists()
    assert callback.best_path is None
    assert callback.last_path is None


def test_another_rank_drops_the_ranking_a_resume_gave_it(tmp_path: Path) -> None:
    written = ModelCheckpoint(tmp_path / "ckpt", monitor="val_loss")
    fit(written, [0.5, 0.4])
    other = ModelCheckpoint(tmp_path / "ckpt", monitor="val_loss")
    other.load_state_dict(written.state_dict())  # what a resume gives every process
    assert other.best_k == written.best_k != {}
    trainer = FakeTrainer([other], rank_zero=False)
    other.on_fit_start(trainer)  # rank 0 alone ranks from here on: its files may go
    assert (other.best_path, other.best_k, other.best_score) == (None, {}, None)


def test_missing_monitor_key_is_a_clear_error(tmp_path: Path) -> None:
    callback = ModelCheckpoint(tmp_path, monitor="val_accuracy")
    with pytest.raises(KeyError, match=r"monitors 'val_accuracy', but the epoch logs hold only"):
        fit(callback, [0.5])


def test_save_top_k_zero_writes_only_last_and_never_reads_the_monitor(tmp_path: Path) -> None:
    callback = ModelCheckpoint(tmp_path, monitor="val_accuracy", save_top_k=0)
    trainer = fit(callback, [0.5, 0.4])
    assert [file for file, _ in trainer.saves] == ["last.ckpt", "last.ckpt"]
    assert on_disk(tmp_path) == ["last.ckpt"]
    assert saved_epoch(tmp_path / "last.ckpt") == 1
    assert callback.best_path is None


# -- files ------------------------------------------------------------------------------------


def test_filename_template_takes_metrics(tmp_path: Path) -> None:
    callback = ModelCheckpoint(
        tmp_path, monitor="val_loss", filename="e{epoch}-{val_loss:.2f}", save_last=False
    )
    fit(callback, [0.25])
    assert on_disk(tmp_path) == ["e0-0.25.ckpt"]
    bad = ModelCheckpoint(tmp_path / "bad", filename="{val_acc:.2f}")  # a folder of its own
    with pytest.raises(ValueError, match=r"could not fill its filename template.*'val_acc'"):
        fit(bad, [0.25])


def test_last_ckpt_is_a_real_file_equal_to_the_epoch_file(tmp_path: Path) -> None:
    callback = ModelCheckpoint(tmp_path, monitor="val_loss")
    fit(callback, [0.5])
    last = tmp_path / "last.ckpt"
    assert last.is_file()
    assert not last.is_symlink()
    assert last.read_bytes() == (tmp_path / name(0)).read_bytes()


def test_last_ckpt_is_written_even_when_the_epoch_does_not_rank(tmp_path: Path) -> None:
    callback = ModelCheckpoint(tmp_path, monitor="val_loss", save_top_k=1)
    trainer = fit(callback, [0.1, 0.9])
    assert [file for file, _ in trainer.saves] == [name(0), "last.ckpt"]  # epoch 0: a copy
    assert saved_epoch(tmp_path / "last.ckpt") == 1
    assert on_disk(tmp_path) == sorted([name(0), "last.ckpt"])


def test_last_path(tmp_path: Path) -> None:
    callback = ModelCheckpoint(tmp_path, monitor="val_loss")
    assert [callback.last_path] == [None]
    fit(callback, [0.5, 0.6])
    assert callback.last_path == tmp_path / "last.ckpt"
    # a new process finds the previous run's last.ckpt
    assert ModelCheckpoint(tmp_path, monitor="val_loss").last_path == tmp_path / "last.ckpt"
    # without last.ckpt: the latest ranked file
    ranked = ModelCheckpoint(tmp_path / "r", save_last=False, save_top_k=2)
    fit(ranked, [0.5, 0.6, 0.7])
    assert ranked.last_path == tmp_path / "r" / name(2)


def test_fit_start_creates_the_folder_or_says_why_not(tmp_path: Path) -> None:
    callback = ModelCheckpoint(tmp_path / "a" / "b")
    callback.on_fit_start(FakeTrainer([callback]))
    assert (tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("x")
    blocked = ModelCheckpoint(tmp_path / "file" / "ckpt")
    with pytest.raises(CheckpointWriteError, match=r"Could not create the checkpoint folder"):
        blocked.on_fit_start(FakeTrainer([blocked]))


# -- its state --------------------------------------------------------------------------------


def test_resumed_bookkeeping_ends_like_an_uninterrupted_run(tmp_path: Path) -> None:
    scores = [0.5, 0.2, 0.4, 0.1, 0.3, 0.05]
    straight = ModelCheckpoint(tmp_path / "straight", monitor="val_loss", save_top_k=2)
    fit(straight, scores)

    first = ModelCheckpoint(tmp_path / "resumed", monitor="val_loss", save_top_k=2)
    fit(first, scores[:3])
    # a new process: a fresh callback gets its state back from last.ckpt
    second = ModelCheckpoint(tmp_path / "resumed", monitor="val_loss", save_top_k=2)
    assert second.last_path is not None
    second.load_state_dict(load_checkpoint(second.last_path)["callbacks"]["ModelCheckpoint"])
    trainer = FakeTrainer([second])
    trainer.global_step = 30
    trainer.run(scores[3:], start=3)

    assert on_disk(tmp_path / "resumed") == on_disk(tmp_path / "straight")
    assert second.best_score == straight.best_score == 0.05
    assert second.best_path is not None
    assert straight.best_path is not None
    assert second.best_path.name == straight.best_path.name
    assert sorted(second.best_k.values()) == sorted(straight.best_k.values())


def test_state_dict_round_trips_and_a_new_monitor_starts_afresh(tmp_path: Path) -> None:
    callback = ModelCheckpoint(tmp_path, monitor="val_loss", save_top_k=2)
    fit(callback, [0.3, 0.1])
    state = callback.state_dict()
    copy = ModelCheckpoint(tmp_path, monitor="val_loss", save_top_k=2)
    copy.load_state_dict(state)
    assert copy.state_dict() == state
    assert copy.best_path == tmp_path / name(1)
    other = ModelCheckpoint(tmp_path, monitor="val_accuracy", mode="max")
    other.load_state_dict(state)
    assert other.best_k == {}
    assert other.best_path is None


# -- arguments --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "avg"}, r"`mode` to be 'min', 'max' or 'auto', but got 'avg'"),
        ({"save_top_k": -2}, r"`save_top_k` >= -1, but got -2"),
        ({"every_n_epochs": 0}, r"`every_n_epochs` >= 1, but got 0"),
        ({"save_top_k": 0, "save_last": False}, r"save_top_k=0 and save_last=False save nothing"),
        ({"filename": "last"}, r"other than 'last.ckpt'"),
        ({"filename": "a/b"}, r"without '/'"),
        ({"filename": "epoch={epoch"}, r"to be a str.format template"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelCheckpoint(tmp_path, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"save_top_k": 1.5}, r"`save_top_k` to be an int, but got 1.5"),
        ({"save_top_k": True}, r"`save_top_k` to be an int, but got True"),
        ({"every_n_epochs": "2"}, r"`every_n_epochs` to be an int, but got '2'"),
        ({"filename": 3}, r"`filename` to be a str"),
        ({"monitor": 3}, r"`monitor` to be a str or None"),
        ({"save_last": "yes"}, r"`save_last` to be a bool, but got str 'yes'"),
        ({"overwrite": 1}, r"`overwrite` to be a bool, but got int 1"),
    ],
)
def test_arguments_of_the_wrong_type_are_refused(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        ModelCheckpoint(tmp_path, **kwargs)


def test_importable_from_the_documented_places() -> None:
    from rnnkit import callbacks

    assert callbacks.ModelCheckpoint is ModelCheckpoint
    assert rnnkit.ModelCheckpoint is ModelCheckpoint
    assert rnnkit.load_model is load_model


# -- with the real Trainer --------------------------------------------------------------------


class RecordWeights(Callback):
    """Keeps a copy of the weights at the end of every epoch."""

    def __init__(self) -> None:
        self.weights: list[dict[str, torch.Tensor]] = []

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        self.weights.append({k: v.clone() for k, v in trainer.model.state_dict().items()})


def test_with_the_trainer_the_kept_files_are_the_best_epochs_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x, y = torch.randn(96, 6, 3), torch.randint(0, 3, (96,))
    record = RecordWeights()
    callback = ModelCheckpoint(tmp_path, monitor="val_loss", save_top_k=2)
    trainer = Trainer(
        max_epochs=4, batch_size=32, lr=0.05, seed=0, progress=False, callbacks=[record, callback]
    )
    model = SequenceClassifier(3, 3, 8)
    history = trainer.fit(model, (x[:64], y[:64]), val=(x[64:], y[64:]))
    val_losses = history["val_loss"]
    best = sorted(range(4), key=lambda e: val_losses[e])[:2]
    kept = {Path(path).name for path in callback.best_k}
    assert len(kept) == 2
    assert {load_checkpoint(tmp_path / file)["trainer"]["epoch"] for file in kept} == {
        e + 1
        for e in best  # the Trainer's state after epoch e resumes at epoch e + 1
    }
    assert callback.best_path is not None
    assert callback.best_score == val_losses[best[0]]
    rebuilt = load_model(callback.best_path)
    for key, value in rebuilt.state_dict().items():
        assert torch.equal(value, record.weights[best[0]][key]), key
    last = load_checkpoint(tmp_path / "last.ckpt")
    assert last["trainer"]["epoch"] == 4
    assert last["callbacks"]["ModelCheckpoint"]["best_score"] == val_losses[best[0]]
