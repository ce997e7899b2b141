"""Watching a fit: the per-epoch progress lines, CSVLogger and TensorBoardLogger.

The CSV file is compared with the run's History (also after a crash and an exact resume),
and the TensorBoard events are read back with TensorBoard's own reader.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from rnnkit.callbacks import Callback, CSVLogger, ModelCheckpoint, TensorBoardLogger
from rnnkit.errors import CheckpointError
from rnnkit.models import Seq2SeqRegressor, SequenceClassifier
from rnnkit.training import History, Trainer
from test_resume import InterruptAt

EPOCHS = 4
BATCHES = 4  # per epoch: 32 samples in batches of 8


def _data() -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(32, 5, 3, generator=gen), torch.randint(0, 2, (32,), generator=gen)


def _model() -> SequenceClassifier:
    torch.manual_seed(0)
    return SequenceClassifier(3, 2, 8)


def _trainer(callbacks: list[Callback], **kwargs: Any) -> Trainer:
    options: dict[str, Any] = {"batch_size": 8, "seed": 0, "progress": False, **kwargs}
    return Trainer(max_epochs=EPOCHS, callbacks=callbacks, **options)


def _fit(trainer: Trainer, resume: bool = False) -> History:
    x, y = _data()
    return trainer.fit(_model(), (x, y), val=(x[:8], y[:8]), resume_from="last" if resume else None)


def _read_csv(path: Path) -> list[dict[str, float]]:
    with path.open(newline="", encoding="utf-8") as file:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(file)]


class Crash(Callback):
    """Raise at the end of epoch ``epoch`` (or at batch ``batch`` of it)."""

    def __init__(self, epoch: int, batch: int | None = None) -> None:
        self.epoch, self.batch = epoch, batch

    def on_batch_end(self, trainer: Any, batch_idx: int, outputs: dict[str, Any]) -> None:
        if trainer.epoch == self.epoch and batch_idx == self.batch:
            raise RuntimeError("crash")

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        if epoch == self.epoch and self.batch is None:
            raise RuntimeError("crash")


class AddKey(Callback):
    """Log ``key`` from epoch ``start`` on (a late column, added by a callback)."""

    def __init__(self, key: str, start: int) -> None:
        self.key, self.start = key, start

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        if epoch >= self.start:
            logs[self.key] = 10.0 * epoch + 0.1


# -- the progress line ----------------------------------------------------------------------


def test_a_captured_fit_prints_one_line_per_epoch(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _data()
    history = Trainer(max_epochs=2, batch_size=8, seed=0).fit(_model(), (x, y), val=(x, y))
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["Epoch 1/2", "Epoch 2/2"]
    for line, record in zip(lines, history, strict=True):
        assert f"{record['time']:.1f}s" in line
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
            assert f"{key}={record[key]:.4g}" in line


def test_a_fast_dev_run_counts_its_one_epoch(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _data()
    Trainer(max_epochs=10, batch_size=8, fast_dev_run=True).fit(_model(), (x, y))
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["Epoch 1/1"]


def test_progress_false_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _data()
    Trainer(max_epochs=2, batch_size=8, progress=False).fit(_model(), (x, y))
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "")


# -- CSVLogger ------------------------------------------------------------------------------


def test_csv_rows_equal_the_history(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "metrics.csv"
    history = _fit(_trainer([CSVLogger(path)]))
    rows = _read_csv(path)
    assert rows == history.to_list()
    header = path.read_text().splitlines()[0].split(",")
    assert header[:2] == ["epoch", "loss"]


def test_csv_takes_late_columns_and_later_callbacks_entries(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    history = _fit(_trainer([CSVLogger(path), AddKey("late", start=2)]))
    rows = _read_csv(path)
    assert rows == history.to_list()
    assert [row.get("late") for row in rows] == [None, None, 20.1, 30.1]


@pytest.mark.parametrize(
    "crash",
    [
        "epoch end, after the checkpoint",
        "epoch end, before the checkpoint",
        "in the middle of an epoch",
    ],
)
def test_csv_after_a_crash_and_resume_has_every_epoch_once(tmp_path: Path, crash: str) -> None:
    path = tmp_path / "metrics.csv"

    def callbacks(crashing: bool) -> list[Callback]:
        saver = ModelCheckpoint(tmp_path / "ckpt")
        logger = CSVLogger(path)
        if not crashing:
            return [saver, logger]
        if crash.startswith("in the middle"):
            return [saver, logger, Crash(epoch=2, batch=1)]
        if crash.endswith("after the checkpoint"):
            return [saver, logger, Crash(epoch=2)]
        return [logger, Crash(epoch=2), saver]  # the row of epoch 2 is written, not saved

    with pytest.raises(RuntimeError, match="crash"):
        _fit(_trainer(callbacks(crashing=True)))
    written = len(_read_csv(path))
    assert written == (3 if crash.startswith("epoch end") else 2)
    resumed = _fit(_trainer(callbacks(crashing=False)), resume=True)
    rows = _read_csv(path)
    assert [int(row["epoch"]) for row in rows] == list(range(EPOCHS))
    assert rows == resumed.to_list()
    straight = _fit(_trainer([]))  # the exact resume trained as an uninterrupted run
    assert [row["loss"] for row in rows] == straight["loss"]


class _FakeRank:
    def __init__(self, rank: int) -> None:
        self.is_global_zero = rank == 0
        self.history = History()
        self.global_step = 0
        self.logged_metrics = {"loss": 0.5, "step": 2.0}
        self.optimizer = None


def test_only_rank_0_writes(tmp_path: Path) -> None:
    loggers: list[Callback] = [CSVLogger(tmp_path / "m.csv")]
    if _has_tensorboard():
        loggers.append(TensorBoardLogger(tmp_path / "tb"))
    for rank in (1, 0):
        trainer = _FakeRank(rank)
        for logger in loggers:
            logger.on_fit_start(trainer)
            logger.on_batch_end(trainer, 0, {})
            logger.on_epoch_end(trainer, 0, {"epoch": 0, "loss": 0.5})
            logger.on_fit_end(trainer)
        if rank == 1:
            assert list(tmp_path.iterdir()) == []
    assert _read_csv(tmp_path / "m.csv") == [{"epoch": 0.0, "loss": 0.5}]


# -- TensorBoardLogger ----------------------------------------------------------------------


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    events = accumulator.EventAccumulator(str(log_dir))
    events.Reload()
    return {
        tag: [(event.step, event.value) for event in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
    }


class BatchLosses(Callback):
    """The reference: every training batch's loss, read on the host."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_batch_end(self, trainer: Any, batch_idx: int, outputs: dict[str, Any]) -> None:
        self.losses.append(float(outputs["loss"]))


def test_tensorboard_events_hold_the_logged_values(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    reference = BatchLosses()
    lr_decay = lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # noqa: E731
    trainer = _trainer(
        [TensorBoardLogger(tmp_path / "tb"), reference], log_every_n_steps=2, scheduler=lr_decay
    )
    history = _fit(trainer)
    scalars = _scalars(tmp_path / "tb")
    ends = [BATCHES * (epoch + 1) for epoch in range(EPOCHS)]
    assert scalars["epoch"] == [(step, float(e)) for e, step in enumerate(ends)]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"):
        steps, values = zip(*scalars[f"epoch/{key}"], strict=True)
        assert list(steps) == ends
        assert list(values) == pytest.approx(history[key], rel=1e-6)  # stored as float32
    losses = reference.losses
    interval_means = [(losses[i] + losses[i + 1]) / 2 for i in range(0, len(losses), 2)]
    steps, values = zip(*scalars["step/loss"], strict=True)
    assert list(steps) == list(range(2, BATCHES * EPOCHS + 1, 2))
    assert list(values) == pytest.approx(interval_means, rel=1e-5)
    lrs = dict(scalars["step/lr"])
    assert lrs[2] == pytest.approx(1e-3)
    assert lrs[BATCHES * EPOCHS] == pytest.approx(1e-3 * 0.5**3)


def test_tensorboard_after_a_crash_and_resume_shows_each_point_once(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")

    def callbacks(crashing: bool) -> list[Callback]:
        chosen: list[Callback] = [ModelCheckpoint(tmp_path / "ckpt")]
        chosen.append(TensorBoardLogger(tmp_path / "tb"))
        return [*chosen, Crash(epoch=2, batch=2)] if crashing else chosen

    with pytest.raises(RuntimeError, match="crash"):
        _fit(_trainer(callbacks(crashing=True), log_every_n_steps=1))
    history = _fit(_trainer(callbacks(crashing=False), log_every_n_steps=1), resume=True)
    scalars = _scalars(tmp_path / "tb")
    steps, values = zip(*scalars["epoch/loss"], strict=True)
    assert list(steps) == [BATCHES * (epoch + 1) for epoch in range(EPOCHS)]
    assert list(values) == pytest.approx(history["loss"], rel=1e-6)
    step_losses = [step for step, _ in scalars["step/loss"]]
    assert step_losses == list(range(1, BATCHES * EPOCHS + 1))  # none twice, none missing


def test_a_fit_refused_at_its_start_leaves_the_logs_of_the_run_before(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")

    def callbacks() -> list[Callback]:
        loggers: list[Callback] = [
            CSVLogger(tmp_path / "log.csv"),
            TensorBoardLogger(tmp_path / "tb"),
        ]
        return [*loggers, ModelCheckpoint(tmp_path / "ckpt")]

    _fit(_trainer(callbacks()))
    rows, scalars = _read_csv(tmp_path / "log.csv"), _scalars(tmp_path / "tb")
    with pytest.raises(CheckpointError, match="holds checkpoints of another run"):
        _fit(_trainer(callbacks()))  # a fresh fit into the finished run's folder
    assert _read_csv(tmp_path / "log.csv") == rows
    assert len(rows) == EPOCHS
    assert _scalars(tmp_path / "tb") == scalars


def test_tensorboard_step_lr_is_the_rate_each_step_used(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    halving = lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # noqa: E731
    trainer = _trainer(
        [TensorBoardLogger(tmp_path / "tb")],
        log_every_n_steps=1,
        scheduler=halving,
        scheduler_interval="step",
    )
    _fit(trainer)
    steps, rates = zip(*_scalars(tmp_path / "tb")["step/lr"], strict=True)
    assert list(steps) == list(range(1, BATCHES * EPOCHS + 1))
    assert list(rates) == pytest.approx([1e-3 * 0.5 ** (step - 1) for step in steps], rel=1e-6)


class _StopAt(Callback):
    """A Ctrl-C at the start of the batch after global step ``step`` (outside any hold)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_start(self, trainer: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


class _SaveAt(Callback):
    """Saves a checkpoint to ``path`` after global step ``step``, then the run goes on."""

    def __init__(self, step: int, path: Path) -> None:
        self.step, self.path = step, path

    def on_batch_end(self, trainer: Any, batch_idx: int, outputs: dict[str, Any]) -> None:
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)


@pytest.mark.parametrize("stop", ["ctrl-c at batch end", "ctrl-c at batch start", "saved, crashed"])
def test_tensorboard_steps_after_a_mid_epoch_resume_equal_the_straight_runs(
    tmp_path: Path, stop: str
) -> None:
    pytest.importorskip("tensorboard")
    decay = lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1 / (1 + k))  # noqa: E731

    def run(name: str, extra: list[Callback], resume: str | Path | None = None) -> dict[str, Any]:
        callbacks = [ModelCheckpoint(tmp_path / name / "ckpt"), *extra]
        callbacks.append(TensorBoardLogger(tmp_path / name / "tb"))
        options = {"log_every_n_steps": 2, "scheduler": decay, "scheduler_interval": "step"}
        trainer = _trainer(callbacks, **options)
        x, y = _data()
        trainer.fit(_model(), (x, y), val=(x[:8], y[:8]), resume_from=resume)
        return _scalars(tmp_path / name / "tb")

    straight = run("straight", [])
    saved = tmp_path / "at-step-6.ckpt"
    choices: dict[str, list[Callback]] = {
        "ctrl-c at batch end": [InterruptAt(6)],  # epoch 1, after its second batch
        "ctrl-c at batch start": [_StopAt(6)],
        "saved, crashed": [_SaveAt(6, saved), Crash(epoch=2)],
    }
    first = choices[stop]
    if stop == "saved, crashed":
        with pytest.raises(RuntimeError, match="crash"):
            run("resumed", first)
    else:
        run("resumed", first)
    resumed = run("resumed", [], resume=saved if stop == "saved, crashed" else "last")
    for tag in ("step/loss", "step/lr"):
        assert [s for s, _ in resumed[tag]] == [s for s, _ in straight[tag]], tag  # each once
        values = [v for _, v in resumed[tag]]
        assert values == pytest.approx([v for _, v in straight[tag]], rel=1e-6), tag


def test_a_resume_with_another_logging_interval_keeps_the_points_written(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")

    def run(every: int, extra: list[Callback], resume: bool = False) -> list[int]:
        callbacks = [ModelCheckpoint(tmp_path / "ckpt"), *extra, TensorBoardLogger(tmp_path / "tb")]
        _fit(_trainer(callbacks, log_every_n_steps=every), resume=resume)
        return [step for step, _ in _scalars(tmp_path / "tb")["step/loss"]]

    before = run(3, [_StopAt(7)])  # epoch 1 after 3 batches: step 7's interval is written
    assert before[-1] == 7
    after = run(2, [], resume=True)  # position 3 is no step of the new interval
    assert 7 in after
    assert len(after) == len(set(after))


class _SkipFirstBatchOfEpoch1(Callback):
    """Makes the loss of epoch 1's first batch NaN (skipped), then saves a checkpoint there."""

    def __init__(self, path: Path | None) -> None:
        self.path, self.active = path, False

    def on_batch_start(self, trainer: Any, batch_idx: int) -> None:
        self.active = trainer.epoch == 1 and batch_idx == 0

    def on_batch_end(self, trainer: Any, batch_idx: int, outputs: dict[str, Any]) -> None:
        if self.active and self.path is not None:
            trainer.save_checkpoint(self.path)  # mid-epoch, but at epoch 0's last step
        self.active = False

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        loss = torch.nn.functional.cross_entropy(output, target)
        return loss * math.nan if self.active else loss


def test_a_resume_at_the_step_an_epoch_ended_keeps_that_epochs_tensorboard_metrics(
    tmp_path: Path,
) -> None:
    pytest.importorskip("tensorboard")

    def run(name: str, save: Path | None, crash: bool, resume: Path | None = None) -> Any:
        skip = _SkipFirstBatchOfEpoch1(save)
        callbacks: list[Callback] = [skip, TensorBoardLogger(tmp_path / name)]
        callbacks += [Crash(epoch=2)] if crash else []
        trainer = _trainer(callbacks, on_nan="skip", loss=skip.loss)
        x, y = _data()
        trainer.fit(_model(), (x, y), val=(x[:8], y[:8]), resume_from=resume)
        return _scalars(tmp_path / name)

    straight = run("straight", None, crash=False)
    with pytest.raises(RuntimeError, match="crash"):
        run("resumed", tmp_path / "skip.ckpt", crash=True)
    resumed = run("resumed", None, crash=False, resume=tmp_path / "skip.ckpt")
    for tag in ("epoch/loss", "epoch/val_loss", "epoch"):
        assert [step for step, _ in resumed[tag]] == [step for step, _ in straight[tag]], tag


def test_tensorboard_step_lr_with_tbptt_is_the_rate_of_the_logged_step(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    halving = lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # noqa: E731
    trainer = Trainer(
        max_epochs=1,
        batch_size=4,
        lr=1.0,
        optimizer="sgd",
        progress=False,
        callbacks=[TensorBoardLogger(tmp_path / "tb")],
        log_every_n_steps=1,
        scheduler=halving,
        scheduler_interval="step",
        tbptt_steps=3,
    )
    torch.manual_seed(0)
    series = torch.randn(8, 6, 1)  # 2 batches of 2 windows: steps 1 to 4
    trainer.fit(Seq2SeqRegressor(1, hidden_size=4), (series, series))
    assert _scalars(tmp_path / "tb")["step/lr"] == [(2, 0.5), (4, 0.125)]


def test_a_resume_with_no_epoch_left_rewrites_the_csv_from_the_history(tmp_path: Path) -> None:
    def callbacks(crashing: bool) -> list[Callback]:
        chosen: list[Callback] = [CSVLogger(tmp_path / "log.csv")]
        chosen += [Crash(epoch=EPOCHS - 1)] if crashing else []  # after the row, before the save
        return [*chosen, ModelCheckpoint(tmp_path / "ckpt")]

    with pytest.raises(RuntimeError, match="crash"):
        _fit(_trainer(callbacks(crashing=True)))
    assert len(_read_csv(tmp_path / "log.csv")) == EPOCHS
    resumed = Trainer(EPOCHS - 1, 8, seed=0, progress=False, callbacks=callbacks(crashing=False))
    history = _fit(resumed, resume=True)
    assert len(history) == EPOCHS - 1
    assert [row["epoch"] for row in _read_csv(tmp_path / "log.csv")] == history["epoch"]


def test_tensorboard_logger_without_tensorboard_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(
        ImportError, match=r"pip install tensorboard` \(rnnkit\'s `tensorboard` extra\)"
    ):
        TensorBoardLogger(tmp_path)


def test_csv_values_read_back_exactly(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path / "m.csv")
    trainer = _FakeRank(0)
    logger.on_fit_start(trainer)
    values = {"epoch": 0, "loss": 1 / 3, "tiny": 1e-300, "nan": math.nan}
    logger.on_epoch_end(trainer, 0, dict(values))
    (row,) = _read_csv(tmp_path / "m.csv")
    assert row["loss"] == 1 / 3
    assert row["tiny"] == 1e-300
    assert math.isnan(row["nan"])
