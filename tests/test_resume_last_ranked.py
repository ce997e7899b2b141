"""``resume_from="last"`` in a folder without ``last.ckpt``: the newest ranked checkpoint.

With ``ModelCheckpoint(save_last=False)`` a run leaves only ranked files; a ranked file holds
the full trainer state at the end of its epoch, so ``resume_from="last"`` continues from the
newest one (by the epoch and step saved inside) of the run that owns the folder. These tests
compare such a resume, bitwise, with the run that was never stopped, and check what is never
taken for the latest checkpoint: another run's file, a damaged one, one outside the folder.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from rnnkit.callbacks import Callback
from rnnkit.callbacks.model_checkpoint import ModelCheckpoint
from rnnkit.errors import CheckpointError
from rnnkit.io.checkpoint import load_checkpoint
from rnnkit.io.run_folder import claim_folder
from rnnkit.models import SequenceClassifier
from rnnkit.training.trainer import Trainer
from test_resume import InterruptAt


def _data() -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, 5, 3, generator=gen)
    return x, torch.randint(0, 3, (30,), generator=gen)


def _trainer(callback: ModelCheckpoint, epochs: int) -> Trainer:
    return Trainer(
        max_epochs=epochs,
        batch_size=8,  # 4 batches per epoch, the last one short
        optimizer="adamw",
        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7),
        seed=5,
        callbacks=[callback],
        progress=False,
    )


def _fit(callback: ModelCheckpoint, epochs: int, **kwargs: Any) -> Trainer:
    x, y = _data()
    torch.manual_seed(2 if kwargs.get("resume_from") is not None else 1)  # only a resume restores
    model = SequenceClassifier(3, 3, 8, cell="gru", num_layers=2, dropout=0.3)
    trainer = _trainer(callback, epochs)
    trainer.fit(model, (x, y), val=(x[:12], y[:12]), **kwargs)
    return trainer


def _ckpts(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".ckpt"))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def _untimed(trainer: Trainer) -> list[dict[str, float]]:
    return [{k: v for k, v in record.items() if k != "time"} for record in trainer.history]


def _step(path: Path) -> int:
    return int(load_checkpoint(path)["trainer"]["global_step"])


SETTINGS = [
    pytest.param({"save_top_k": 2}, id="latest-two"),
    pytest.param({"monitor": "val_loss", "save_top_k": 1}, id="best-val-loss"),
    pytest.param({"monitor": "val_accuracy", "save_top_k": 2}, id="best-two-val-accuracy"),
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_resume_last_without_last_ckpt_equals_the_uninterrupted_run(
    tmp_path: Path, settings: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    straight_cb = ModelCheckpoint(tmp_path / "straight", save_last=False, **settings)
    straight = _fit(straight_cb, epochs=5)
    _fit(ModelCheckpoint(tmp_path / "run", save_last=False, **settings), epochs=3)
    newest = max((tmp_path / "run" / name for name in _ckpts(tmp_path / "run")), key=_step)

    resumed_cb = ModelCheckpoint(tmp_path / "run", save_last=False, **settings)  # a new process
    with caplog.at_level(logging.INFO, logger="rnnkit"):
        resumed = _fit(resumed_cb, epochs=5, resume_from="last")

    assert f"resuming from its newest ranked checkpoint {newest.name!r}" in caplog.text
    assert "starts afresh" not in caplog.text
    assert _untimed(resumed) == _untimed(straight)
    assert len(resumed.history) == 5
    assert resumed.global_step == straight.global_step == 20
    assert resumed.model is not None
    assert straight.model is not None
    for (name, a), b in zip(
        resumed.model.state_dict().items(), straight.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert resumed.optimizer is not None
    assert straight.optimizer is not None
    opt_a, opt_b = resumed.optimizer.state_dict(), straight.optimizer.state_dict()
    assert opt_a["param_groups"] == opt_b["param_groups"]
    for index, state in opt_a["state"].items():
        for key, value in state.items():
            assert torch.equal(value, opt_b["state"][index][key]), (index, key)
    # the resumed run ranks and prunes on: the same files, with the same bookkeeping
    assert _ckpts(tmp_path / "run") == _ckpts(tmp_path / "straight")
    assert resumed_cb.state_dict()["best_k"] == straight_cb.state_dict()["best_k"]
    assert resumed_cb.best_path is not None
    assert straight_cb.best_path is not None
    assert resumed_cb.best_path.name == straight_cb.best_path.name


def test_a_run_saved_without_last_ckpt_resumes_from_its_ranked_file(tmp_path: Path) -> None:
    x, y = _data()
    model = SequenceClassifier(3, 3, 8)

    def make(epochs: int) -> Trainer:
        return Trainer(
            epochs, 8, progress=False, callbacks=[ModelCheckpoint(tmp_path, save_last=False)]
        )

    make(2).fit(model, (x, y))
    resumed = make(4)
    resumed.fit(model, (x, y), resume_from="last")
    assert len(resumed.history) == 4  # epochs 0 and 1 came from the checkpoint
    assert _ckpts(tmp_path) == ["epoch=003-step=16.ckpt"]


def test_the_newest_is_told_by_the_step_inside_not_the_file_time(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    _fit(ModelCheckpoint(folder, save_last=False, save_top_k=-1), epochs=3)
    oldest = folder / "epoch=000-step=4.ckpt"
    os.utime(oldest, (4_000_000_000, 4_000_000_000))  # touched last, but epoch 0
    trainer = _trainer(ModelCheckpoint(folder, save_last=False, save_top_k=-1), 5)
    assert trainer.resolve_resume_path("last") == folder / "epoch=002-step=12.ckpt"


def test_an_older_last_ckpt_of_an_interrupt_loses_to_a_newer_ranked_file(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    _fit(ModelCheckpoint(folder, save_last=False, save_top_k=-1), epochs=3)
    shutil.copyfile(folder / "epoch=000-step=4.ckpt", folder / "last.ckpt")  # stale, yet newest
    trainer = _trainer(ModelCheckpoint(folder, save_last=False, save_top_k=-1), 5)
    assert trainer.resolve_resume_path("last") == folder / "epoch=002-step=12.ckpt"
    # at the same step, last.ckpt wins
    shutil.copyfile(folder / "epoch=002-step=12.ckpt", folder / "last.ckpt")
    assert trainer.resolve_resume_path("last") == folder / "last.ckpt"


def test_with_save_last_but_no_last_ckpt_the_newest_ranked_file_is_resumed(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "run"
    _fit(ModelCheckpoint(folder, save_top_k=2), epochs=3)
    (folder / "last.ckpt").unlink()
    trainer = _trainer(ModelCheckpoint(folder, save_top_k=2), 5)
    assert trainer.resolve_resume_path("last") == folder / "epoch=002-step=12.ckpt"


def test_a_damaged_ranked_file_is_skipped_with_a_warning(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    _fit(ModelCheckpoint(folder, save_last=False, save_top_k=2), epochs=3)
    (folder / "epoch=002-step=12.ckpt").write_bytes(b"not a checkpoint")
    trainer = _trainer(ModelCheckpoint(folder, save_last=False, save_top_k=2), 5)
    with pytest.warns(UserWarning, match=r"skipped .*epoch=002-step=12\.ckpt.*PyTorch file"):
        assert trainer.resolve_resume_path("last") == folder / "epoch=001-step=8.ckpt"


def test_a_symlink_in_the_folder_is_never_read(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    _fit(ModelCheckpoint(folder, save_last=False, save_top_k=-1), epochs=3)
    outside = tmp_path / "outside.ckpt"  # the run's newest checkpoint, moved out of the folder
    (folder / "epoch=002-step=12.ckpt").rename(outside)
    (folder / "zzz.ckpt").symlink_to(outside)
    trainer = _trainer(ModelCheckpoint(folder, save_last=False, save_top_k=-1), 5)
    assert trainer.resolve_resume_path("last") == folder / "epoch=001-step=8.ckpt"


def test_another_runs_ranked_files_are_refused_before_training(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    _fit(ModelCheckpoint(folder, save_last=False, save_top_k=2), epochs=3)
    claim_folder(folder, "another-run", replace=True)  # a later run claimed it, saved nothing
    before = _snapshot(folder)
    x, y = _data()
    model = SequenceClassifier(3, 3, 8, cell="gru", num_layers=2, dropout=0.3)
    weights = {key: value.clone() for key, value in model.state_dict().items()}
    trainer = _trainer(ModelCheckpoint(folder, save_last=False, save_top_k=2), 5)
    message = (
        r"Expected resume_from='last' to find a checkpoint of the run that owns .*/run' .*"
        r"but none of the checkpoints there \(epoch=001-step=8\.ckpt, epoch=002-step=12\.ckpt\)"
        r" is a readable one of that run .* Hint: to continue from one of them, pass its path, "
        r"e\.g\. fit\(\.\.\., resume_from='.*epoch=001-step=8\.ckpt'\)"
    )
    with pytest.raises(CheckpointError, match=message) as caught:
        trainer.fit(model, (x, y), resume_from="last")
    assert "resume_from='last')" not in str(caught.value)  # never "do what you just did"
    assert trainer.global_step == 0
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert _snapshot(folder) == before


def test_resuming_another_runs_file_into_a_taken_folder_says_not_to_resume(
    tmp_path: Path,
) -> None:
    _fit(ModelCheckpoint(tmp_path / "a"), epochs=2)
    _fit(ModelCheckpoint(tmp_path / "b"), epochs=2)
    before = _snapshot(tmp_path / "b")
    message = (
        r"Expected ModelCheckpoint's folder .*/b' to be new or this run's, but it holds "
        r"checkpoints of another run; .* Hint: the checkpoint this fit resumes is not one of "
        r"that run's; pass another `dirpath` \(the resumed training then starts a new ranking "
        r"there\); to take the folder over anyway"
    )
    with pytest.raises(CheckpointError, match=message) as caught:
        _fit(ModelCheckpoint(tmp_path / "b"), epochs=4, resume_from=tmp_path / "a" / "last.ckpt")
    assert "resume_from='last'" not in str(caught.value)
    assert _snapshot(tmp_path / "b") == before


@pytest.mark.parametrize("made", [False, True], ids=["missing-folder", "empty-folder"])
def test_resume_last_with_nothing_saved_yet_starts_afresh(
    tmp_path: Path, made: bool, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "run"
    if made:
        folder.mkdir()
    with caplog.at_level(logging.INFO, logger="rnnkit"):
        trainer = _fit(ModelCheckpoint(folder, save_last=False), epochs=2, resume_from="last")
    assert "resume_from='last' found no checkpoint; training starts afresh" in caplog.text
    assert len(trainer.history) == 2
    assert _ckpts(folder) == ["epoch=001-step=8.ckpt"]


class _CrashAt(Callback):
    """Raises at the start of an epoch, as a crash would (no checkpoint is written)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        if epoch == self.epoch:
            raise RuntimeError("crash")


def test_with_two_checkpoint_folders_the_furthest_checkpoint_is_resumed(tmp_path: Path) -> None:
    x, y = _data()

    def callbacks() -> list[Callback]:
        # A keeps one ranked file (epoch 0 is best here: lowest val_accuracy wins with "min")
        best = ModelCheckpoint(tmp_path / "A", "val_accuracy", "min", save_last=False)
        return [best, ModelCheckpoint(tmp_path / "B", save_top_k=0)]

    with pytest.raises(RuntimeError, match="crash"):
        Trainer(20, 8, seed=0, callbacks=[*callbacks(), _CrashAt(5)], progress=False).fit(
            SequenceClassifier(3, 3, 8), (x, y), val=(x[:12], y[:12])
        )
    trainer = Trainer(20, 8, seed=0, callbacks=callbacks(), progress=False)
    assert trainer.resolve_resume_path("last") == tmp_path / "B" / "last.ckpt"
    assert _step(tmp_path / "B" / "last.ckpt") > max(map(_step, (tmp_path / "A").glob("*.ckpt")))


def test_another_runs_last_ckpt_is_not_resumed(tmp_path: Path) -> None:
    x, y = _data()
    Trainer(6, 8, callbacks=[ModelCheckpoint(tmp_path)], progress=False).fit(
        SequenceClassifier(3, 3, 8), (x, y)
    )  # run 1 leaves last.ckpt at epoch 5

    def takeover() -> ModelCheckpoint:
        return ModelCheckpoint(
            tmp_path, save_last=False, save_top_k=-1, overwrite=True, filename="r2-{epoch}"
        )

    with pytest.raises(RuntimeError, match="crash"):
        Trainer(10, 8, callbacks=[takeover(), _CrashAt(3)], progress=False).fit(
            SequenceClassifier(3, 3, 8), (x, y)
        )  # run 2 takes the folder over, writes r2-0..2, then crashes
    trainer = Trainer(10, 8, callbacks=[takeover()], progress=False)
    assert trainer.resolve_resume_path("last") == tmp_path / "r2-2.ckpt"


def test_a_taken_over_folder_never_resumes_the_previous_runs_last_ckpt(tmp_path: Path) -> None:
    x, y = _data()
    Trainer(3, 8, callbacks=[ModelCheckpoint(tmp_path)], progress=False).fit(
        SequenceClassifier(3, 3, 8), (x, y)
    )  # run A: last.ckpt and one ranked file
    with pytest.raises(RuntimeError, match="crash"):  # run B takes over, crashes before saving
        Trainer(
            3, 8, callbacks=[ModelCheckpoint(tmp_path, overwrite=True), _CrashAt(0)], progress=False
        ).fit(SequenceClassifier(3, 3, 8), (x, y))
    trainer = Trainer(3, 8, callbacks=[ModelCheckpoint(tmp_path, overwrite=True)], progress=False)
    assert trainer.resolve_resume_path("last") is None  # nothing of run B: a fresh start


def test_another_experiments_folder_added_at_resume_is_not_preferred(tmp_path: Path) -> None:
    x, y = _data()
    Trainer(5, 8, callbacks=[ModelCheckpoint(tmp_path / "c")], progress=False).fit(
        SequenceClassifier(3, 3, 8), (x, y)
    )  # another experiment, further along
    Trainer(2, 8, callbacks=[ModelCheckpoint(tmp_path / "a")], progress=False).fit(
        SequenceClassifier(3, 3, 8), (x, y)
    )
    both = [ModelCheckpoint(tmp_path / "a"), ModelCheckpoint(tmp_path / "c")]
    trainer = Trainer(5, 8, callbacks=both, progress=False)
    with pytest.warns(UserWarning, match=r"c/last.ckpt', which cannot be resumed: it belongs"):
        assert trainer.resolve_resume_path("last") == tmp_path / "a" / "last.ckpt"


def test_a_folder_copied_without_its_marker_still_resumes(tmp_path: Path) -> None:
    x, y = _data()
    Trainer(3, 8, callbacks=[ModelCheckpoint(tmp_path / "run")], progress=False).fit(
        SequenceClassifier(3, 3, 8), (x, y)
    )
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in (tmp_path / "run").glob("*.ckpt"):  # `cp run/*.ckpt copy/`: no hidden marker
        shutil.copy(path, copy / path.name)
    trainer = Trainer(3, 8, callbacks=[ModelCheckpoint(copy, overwrite=True)], progress=False)
    assert trainer.resolve_resume_path("last") == copy / "last.ckpt"


def test_a_checkpoint_without_a_run_id_is_not_compared_with_another_runs(tmp_path: Path) -> None:
    # runs/last.ckpt comes from an interrupted fit without a ModelCheckpoint: no run id.
    x, y = _data()
    Trainer(
        3, 8, callbacks=[InterruptAt(7)], default_root_dir=tmp_path / "runs", progress=False
    ).fit(SequenceClassifier(3, 3, 8), (x, y))
    Trainer(1, 8, callbacks=[ModelCheckpoint(tmp_path / "best")], progress=False).fit(
        SequenceClassifier(3, 3, 8), (x, y)
    )
    both = [ModelCheckpoint(tmp_path / "runs", overwrite=True), ModelCheckpoint(tmp_path / "best")]
    trainer = Trainer(3, 8, callbacks=both, progress=False)
    with pytest.warns(UserWarning, match=r"best/last.ckpt', which cannot be resumed: it belongs"):
        assert trainer.resolve_resume_path("last") == tmp_path / "runs" / "last.ckpt"
