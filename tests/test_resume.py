"""Exact resume, interrupts, divergence and callback errors (the Trainer side of checkpoints).

The resume tests train 4 epochs straight in this process and compare, bitwise, with a run
stopped after 2 epochs (or interrupted in the middle of one) and resumed from its checkpoint in
a NEW process: this file doubles as that process's script (see ``_worker``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.callbacks import Callback, EarlyStopping, LearningRateMonitor
from rnnkit.callbacks.model_checkpoint import ModelCheckpoint
from rnnkit.errors import CheckpointError, CheckpointMismatchError, TrainingDivergedError
from rnnkit.io._atomic import check_plain
from rnnkit.io.checkpoint import load_checkpoint
from rnnkit.models import Seq2SeqRegressor, SequenceClassifier
from rnnkit.training import RunState
from rnnkit.training.trainer import Trainer

KINDS = ("classifier", "regressor")


def _data(kind: str) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    if kind == "classifier":
        x = torch.randn(40, 6, 3, generator=gen)
        return x, torch.randint(0, 3, (40,), generator=gen)
    waves = torch.sin(torch.linspace(0, 6, 13) + 3 * torch.rand(40, 1, generator=gen))
    return waves[:, :-1, None].contiguous(), waves[:, 1:, None].contiguous()


def _model(kind: str, seed: int = 1) -> torch.nn.Module:
    """The run's model; a resumed run builds it with ANOTHER seed, so only a resume restores it."""
    torch.manual_seed(seed)
    if kind == "classifier":  # dropout draws from the global RNG: its state must resume too
        return SequenceClassifier(3, 3, 8, cell="gru", num_layers=2, dropout=0.3)
    return Seq2SeqRegressor(1, hidden_size=8, cell="lstm", num_layers=2, dropout=0.2)


def _trainer(kind: str, folder: Path, epochs: int = 4, extra: tuple[Callback, ...] = ()) -> Trainer:
    callbacks = [ModelCheckpoint(folder), EarlyStopping("val_loss", patience=10), *extra]
    options: dict[str, Any] = {"teacher_forcing": 0.6} if kind == "regressor" else {}
    return Trainer(
        max_epochs=epochs,
        batch_size=12,  # 4 batches per epoch, the last one short
        optimizer="adamw",
        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7),
        seed=5,
        callbacks=callbacks,
        progress=False,
        **options,
    )


def _fit(kind: str, folder: Path, epochs: int = 4, **kwargs: Any) -> Trainer:
    x, y = _data(kind)
    trainer = _trainer(kind, folder, epochs, kwargs.pop("extra", ()))
    model = _model(kind, seed=2 if kwargs.get("resume_from") is not None else 1)
    trainer.fit(model, (x, y), val=(x[:20], y[:20]), **kwargs)
    return trainer


def _worker(args: list[str]) -> None:
    """Run in a new process: for each ``kind checkpoint out`` triple, resume, finish, save."""
    torch.set_num_threads(1)
    for i in range(0, len(args), 3):
        kind, checkpoint, out = args[i : i + 3]
        trainer = _fit(kind, Path(out).parent / f"resumed-{i}", resume_from=checkpoint)
        trainer.save_checkpoint(out)


def _assert_same_run(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Weights, optimizer state and History equal bitwise (History times aside)."""
    for key, value in a["model"]["state_dict"].items():
        assert torch.equal(value, b["model"]["state_dict"][key]), key
    opt_a, opt_b = a["trainer"]["optimizer"], b["trainer"]["optimizer"]
    assert opt_a["param_groups"] == opt_b["param_groups"]
    for index, state in opt_a["state"].items():
        for name, value in state.items():
            assert torch.equal(value, opt_b["state"][index][name]), (index, name)
    records = [c["trainer"]["history"]["records"] for c in (a, b)]
    untimed = [[{k: v for k, v in r.items() if k != "time"} for r in rs] for rs in records]
    assert untimed[0] == untimed[1]
    assert len(untimed[0]) == 4
    assert a["trainer"]["global_step"] == b["trainer"]["global_step"] == 16
    assert a["callbacks"]["EarlyStopping"]["best"] == b["callbacks"]["EarlyStopping"]["best"]


def _straight(kind: str, folder: Path) -> dict[str, Any]:
    trainer = _fit(kind, folder / "straight")
    trainer.save_checkpoint(folder / "straight.ckpt")
    return load_checkpoint(folder / "straight.ckpt")


class InterruptAt(Callback):
    """Raises KeyboardInterrupt (as Ctrl-C would) after the given global step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, trainer: Any, batch_idx: int, outputs: dict[str, Any]) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


CASES = ("classifier-after-2-epochs", "regressor-after-2-epochs", "classifier-interrupted")


@pytest.fixture(scope="module")
def resumed_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Any]]:
    """Each case: the straight 4-epoch run and the run resumed in ONE new process."""
    root = tmp_path_factory.mktemp("resume")
    jobs: list[str] = []
    for case in CASES:
        kind, folder = case.split("-")[0], root / case
        if case.endswith("interrupted"):
            trainer = _fit(kind, folder / "stopped", extra=(InterruptAt(6),))
            assert trainer.interrupted
            assert len(trainer.history) == 1  # epoch 0, then 2 batches of epoch 1
        else:
            _fit(kind, folder / "stopped", epochs=2)
        jobs += [kind, str(folder / "stopped" / "last.ckpt"), str(folder / "resumed.ckpt")]
    subprocess.run([sys.executable, __file__, *jobs], check=True, timeout=600)
    straight = {kind: _straight(kind, root / kind) for kind in KINDS}
    return {
        case: (straight[case.split("-")[0]], load_checkpoint(root / case / "resumed.ckpt"))
        for case in CASES
    }


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_resume_in_a_new_process_equals_four_epochs_straight(
    case: str, resumed_runs: dict[str, tuple[Any, Any]]
) -> None:
    straight, resumed = resumed_runs[case]
    _assert_same_run(straight, resumed)


def test_an_interrupt_saves_where_it_stopped(tmp_path: Path) -> None:
    trainer = _fit("classifier", tmp_path / "stopped", extra=(InterruptAt(6),))
    assert trainer.interrupt_checkpoint == tmp_path / "stopped" / "last.ckpt"
    saved = load_checkpoint(trainer.interrupt_checkpoint)["trainer"]
    assert (saved["epoch"], saved["position"], saved["global_step"]) == (1, 2, 6)
    assert saved["permutation"] is not None
    assert len(saved["history"]["records"]) == 1


def test_an_interrupt_inside_a_step_repeats_that_step_on_resume(tmp_path: Path) -> None:
    """Ctrl-C usually lands in the forward/backward pass: the step is rolled back."""
    calls = {"n": 0}

    def loss_interrupted_at_call_7(output: Tensor, target: Tensor) -> Tensor:
        calls["n"] += output.requires_grad  # count training steps only
        if calls["n"] == 7:  # batch 2 of epoch 1, after the dropout masks were drawn
            raise KeyboardInterrupt
        return F.cross_entropy(output, target)

    straight = _straight("classifier", tmp_path)
    x, y = _data("classifier")
    trainer = _trainer("classifier", tmp_path / "stopped")
    trainer.loss_fn = loss_interrupted_at_call_7
    history = trainer.fit(_model("classifier"), (x, y), val=(x[:20], y[:20]))
    assert trainer.interrupted
    assert len(history) == 1
    saved = load_checkpoint(tmp_path / "stopped" / "last.ckpt")["trainer"]
    assert (saved["epoch"], saved["position"], saved["global_step"]) == (1, 2, 6)
    resumed = _fit("classifier", tmp_path / "resumed", resume_from=trainer.interrupt_checkpoint)
    resumed.save_checkpoint(tmp_path / "resumed.ckpt")
    _assert_same_run(straight, load_checkpoint(tmp_path / "resumed.ckpt"))


@pytest.mark.parametrize("checkpoint_first", [True, False])
def test_early_stopping_resumes_exactly_whichever_callback_comes_first(
    tmp_path: Path, checkpoint_first: bool
) -> None:
    # Noise labels: validation is best after the first epoch, so EarlyStopping's count
    # starts there, and a checkpoint that missed the first epoch's update stops later.
    torch.manual_seed(0)
    x, y = torch.randn(20, 5, 3), torch.randint(0, 2, (20,))
    xv, yv = torch.randn(20, 5, 3), torch.randint(0, 2, (20,))
    model = SequenceClassifier(3, 2, 8)

    def fit(folder: Path, epochs: int, **kwargs: Any) -> Trainer:
        pair: list[Callback] = [ModelCheckpoint(folder), EarlyStopping("val_loss", patience=3)]
        callbacks = pair if checkpoint_first else pair[::-1]
        trainer = Trainer(epochs, 8, lr=0.1, seed=0, callbacks=callbacks, progress=False)
        trainer.fit(copy.deepcopy(model), (x, y), val=(xv, yv), **kwargs)
        return trainer

    straight = fit(tmp_path / "straight", 40)
    assert len(straight.history) < 40  # it stopped early
    fit(tmp_path / "resumed", 1)  # the run ends after its first epoch, as if it crashed
    resumed = fit(tmp_path / "resumed", 40, resume_from="last")
    untimed = [
        [{k: v for k, v in r.items() if k != "time"} for r in t.history]
        for t in (straight, resumed)
    ]
    assert untimed[0] == untimed[1]
    assert _same_parameters(resumed, straight)


def test_a_checkpoint_holds_the_keys_other_callbacks_logged_in_its_epoch(tmp_path: Path) -> None:
    class LogsEpoch(Callback):
        def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
            logs["logged"] = float(epoch)

    x, y = torch.randn(8, 5, 3), torch.randint(0, 2, (8,))
    callbacks: list[Callback] = [ModelCheckpoint(tmp_path / "run"), LogsEpoch()]
    trainer = Trainer(2, 8, seed=0, callbacks=callbacks, progress=False, default_root_dir=tmp_path)
    trainer.fit(SequenceClassifier(3, 2, 4), (x, y))
    records = load_checkpoint(tmp_path / "run" / "last.ckpt")["trainer"]["history"]["records"]
    assert [r["logged"] for r in records] == [0.0, 1.0]


def test_a_mid_epoch_resume_records_the_rate_the_epoch_started_with(tmp_path: Path) -> None:
    # A per-step scheduler moves the rate inside the epoch; the History's "lr" is the rate
    # the epoch started with, also when the epoch was interrupted and resumed.
    x, y = _data("classifier")

    def trainer(folder: str, *callbacks: Callback) -> Trainer:
        return Trainer(
            2,
            12,
            seed=3,
            scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5),
            scheduler_interval="step",
            callbacks=[ModelCheckpoint(tmp_path / folder), LearningRateMonitor("rate"), *callbacks],
            progress=False,
        )

    straight = trainer("straight").fit(_model("classifier"), (x, y))
    steps_per_epoch = math.ceil(len(x) / 12)
    interrupted = trainer("resumed", InterruptAt(steps_per_epoch + 2))
    interrupted.fit(_model("classifier"), (x, y))
    assert interrupted.interrupted
    resumed = trainer("resumed").fit(_model("classifier"), (x, y), resume_from="last")
    assert resumed["lr"] == straight["lr"]
    assert resumed["rate"] == straight["rate"] == straight["lr"]
    assert straight["lr"][1] == 1e-3 * 0.5**steps_per_epoch


def test_a_learning_rate_monitor_reused_in_a_new_fit_reads_that_fits_rate() -> None:
    x, y = _data("classifier")
    monitor = LearningRateMonitor("rate")
    for lr in (1e-3, 0.5):
        trainer = Trainer(1, 12, lr=lr, callbacks=[monitor], progress=False)
        assert trainer.fit(_model("classifier"), (x, y))["rate"] == [lr]


def test_a_learning_rate_monitor_state_from_a_file_is_checked() -> None:
    monitor = LearningRateMonitor()
    with pytest.raises(ValueError, match=r"^Expected a LearningRateMonitor state"):
        monitor.load_state_dict({"epoch": 1, "lrs": {"lr": "rm -rf"}})
    monitor.load_state_dict({"epoch": 1, "lrs": {"lr": 0.5}})
    assert monitor.state_dict() == {"epoch": 1, "lrs": {"lr": 0.5}}


@pytest.mark.parametrize("refused_by", ["a bad state", "a check at fit start"])
def test_a_refused_resume_leaves_the_model_and_every_callback_as_they_were(
    tmp_path: Path, refused_by: str
) -> None:
    x, y = _data("classifier")
    keeper, monitor = ModelCheckpoint(tmp_path), LearningRateMonitor()
    Trainer(1, 12, seed=3, callbacks=[keeper, monitor], progress=False).fit(
        _model("classifier"), (x, y), val=(x[:12], y[:12])
    )  # the same callback objects wrote the folder
    checkpoint = load_checkpoint(tmp_path / "last.ckpt")
    callbacks: list[Callback] = [keeper, monitor]
    if refused_by == "a bad state":
        checkpoint["callbacks"]["LearningRateMonitor"] = {"epoch": 0, "lrs": {"lr": math.nan}}
        torch.save(checkpoint, tmp_path / "last.ckpt")
        error = r"^Expected a LearningRateMonitor state"
    else:  # a misspelt monitor, refused in on_fit_start after the states were loaded
        callbacks.append(EarlyStopping("val_los"))
        error = "'val_los'"
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    before_callbacks = [dict(vars(keeper)), dict(vars(monitor))]
    model = _model("classifier", seed=2)
    before = _weights(model)
    trainer = Trainer(2, 12, seed=3, callbacks=callbacks, progress=False)
    with pytest.raises(ValueError, match=error):
        trainer.fit(model, (x, y), val=(x[:12], y[:12]), resume_from="last")
    assert _unchanged(model, before)  # also when on_fit_start refused, after the weights loaded
    assert [dict(vars(keeper)), dict(vars(monitor))] == before_callbacks
    trainer.callbacks = [keeper, monitor]
    with pytest.raises(CheckpointError, match="holds checkpoints of another run"):
        trainer.fit(model, (x, y))  # a fresh fit: the folder is still the old run's
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files


class _Opens(Callback):
    """Opens a resource in on_fit_start and closes what it holds in on_exception."""

    def __init__(self) -> None:
        self.closed: list[str] = []

    def on_fit_start(self, trainer: Any) -> None:
        self.handle = "open"

    def on_exception(self, trainer: Any, exc: BaseException) -> None:
        self.closed.append(self.handle)


class _InterruptAtStart(Callback):
    def on_fit_start(self, trainer: Any) -> None:
        raise KeyboardInterrupt


def test_a_refusal_at_fit_start_lets_callbacks_close_what_they_opened(tmp_path: Path) -> None:
    x, y = _data("classifier")
    Trainer(1, 12, callbacks=[ModelCheckpoint(tmp_path)], progress=False).fit(
        _model("classifier"), (x, y)
    )
    opens = _Opens()
    callbacks = [opens, EarlyStopping("val_los"), ModelCheckpoint(tmp_path)]
    with pytest.raises(ValueError, match="'val_los'"):
        Trainer(2, 12, callbacks=callbacks, progress=False).fit(
            _model("classifier"), (x, y), resume_from="last"
        )
    assert opens.closed == ["open"]  # on_exception ran before the roll-back


def test_ctrl_c_at_fit_start_of_a_resume_keeps_the_run_resumable(tmp_path: Path) -> None:
    straight = _fit_in(tmp_path / "straight")
    _fit_in(tmp_path / "run", InterruptAt(6))  # stopped in the second epoch
    files = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    interrupted = _fit_in(
        tmp_path / "run", _InterruptAtStart(), resume_from="last"
    )  # Ctrl-C before training
    assert interrupted.interrupted
    assert interrupted.interrupt_checkpoint is None  # no step taken: nothing to save
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == files
    resumed = _fit_in(tmp_path / "run", resume_from="last")
    assert resumed.global_step == straight.global_step == 3 * 4
    assert _same_parameters(resumed, straight)


class _CountBatches(Callback):
    def __init__(self) -> None:
        self.batches = 0

    def on_batch_end(self, trainer: Any, batch_idx: int, outputs: dict[str, Any]) -> None:
        self.batches += 1


def test_a_refusal_at_fit_start_keeps_a_loaded_state_for_the_next_fit(tmp_path: Path) -> None:
    x, y = _data("classifier")
    first = Trainer(1, 12, seed=3, progress=False)
    first.fit(_model("classifier"), (x, y))
    trainer = Trainer(2, 12, seed=3, progress=False, callbacks=[EarlyStopping("val_los")])
    trainer.load_state_dict(first.state_dict())
    with pytest.raises(ValueError, match="'val_los'"):
        trainer.fit(_model("classifier"), (x, y), val=(x, y))
    counter = _CountBatches()
    trainer.callbacks = [counter]
    trainer.fit(_model("classifier"), (x, y))
    assert counter.batches == 4  # one epoch more: continued from the state, not afresh


def test_a_missing_scheduler_is_refused_before_the_model_changes(tmp_path: Path) -> None:
    _fit("classifier", tmp_path, epochs=1)  # its Trainer has a StepLR scheduler
    x, y = _data("classifier")
    model = _model("classifier", seed=2)
    before = _weights(model)
    trainer = Trainer(
        2, 12, optimizer="adamw", callbacks=[ModelCheckpoint(tmp_path)], progress=False
    )
    with pytest.raises(CheckpointError, match=r"^Expected a Trainer with a `scheduler`"):
        trainer.fit(model, (x, y), val=(x[:20], y[:20]), resume_from="last")
    assert _unchanged(model, before)


class _StopAt(Callback):
    """Asks the fit to stop after the current epoch, from the middle of it."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, trainer: Any, batch_idx: int, outputs: dict[str, Any]) -> None:
        if trainer.global_step == self.step:
            trainer.should_stop = True


def test_a_stop_asked_mid_epoch_then_ctrl_c_resumes_to_the_epochs_end(tmp_path: Path) -> None:
    straight = _fit_in(tmp_path / "straight", _StopAt(5), epochs=4)
    assert straight.global_step == 2 * 4  # the stop asked at step 5 ends the second epoch
    _fit_in(tmp_path / "run", _StopAt(5), InterruptAt(6), epochs=4)
    resumed = _fit_in(tmp_path / "run", _StopAt(5), epochs=4, resume_from="last")
    assert resumed.global_step == straight.global_step
    assert _same_parameters(resumed, straight)


class _RecordsErrors(Callback):
    def on_exception(self, trainer: Any, exc: BaseException) -> None:
        self.last_error = exc


def test_after_a_refused_resume_a_plain_fit_starts_afresh_and_callbacks_keep_their_notes(
    tmp_path: Path,
) -> None:
    x, y = _data("classifier")
    Trainer(1, 12, callbacks=[ModelCheckpoint(tmp_path / "a")], progress=False).fit(
        _model("classifier"), (x, y)
    )
    notes = _RecordsErrors()
    callbacks = [notes, EarlyStopping("val_los"), ModelCheckpoint(tmp_path / "a")]
    trainer = Trainer(3, 12, callbacks=callbacks, progress=False)
    with pytest.raises(ValueError, match="'val_los'") as refused:
        trainer.fit(_model("classifier"), (x, y), resume_from="last")
    assert notes.last_error is refused.value  # its own note, not rolled back
    counter = _CountBatches()
    trainer.callbacks = [counter, ModelCheckpoint(tmp_path / "b")]
    trainer.fit(_model("classifier"), (x, y))
    assert counter.batches == 3 * 4  # afresh: the refused checkpoint's state was not kept


class _SavesAtStart(Callback):
    """Saves a checkpoint in on_fit_start, before a resumed epoch has continued."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_fit_start(self, trainer: Any) -> None:
        trainer.save_checkpoint(self.path)


def test_a_checkpoint_saved_before_a_resumed_epoch_continues_holds_its_position(
    tmp_path: Path,
) -> None:
    straight = _fit_in(tmp_path / "straight")
    _fit_in(
        tmp_path / "run", InterruptAt(6)
    )  # stopped in the second epoch, after 2 of its 4 batches
    _fit_in(tmp_path / "run", _SavesAtStart(tmp_path / "start.ckpt"), resume_from="last")
    saved = load_checkpoint(tmp_path / "start.ckpt")["trainer"]
    assert (saved["epoch"], saved["position"], saved["global_step"]) == (1, 2, 6)
    resumed = _fit_in(tmp_path / "again", resume_from=tmp_path / "start.ckpt")
    assert _same_parameters(resumed, straight)


def test_ctrl_c_before_the_first_step_leaves_another_runs_folder_alone(tmp_path: Path) -> None:
    x, y = _data("classifier")
    Trainer(
        1, 12, callbacks=[ModelCheckpoint(tmp_path / "other", save_top_k=0)], progress=False
    ).fit(_model("classifier"), (x, y))
    files = {p.name: p.read_bytes() for p in (tmp_path / "other").iterdir()}
    callbacks = [_InterruptAtStart(), ModelCheckpoint(tmp_path / "other")]
    trainer = Trainer(1, 12, callbacks=callbacks, default_root_dir=tmp_path, progress=False)
    trainer.fit(_model("classifier"), (x, y))
    assert trainer.interrupted
    assert trainer.interrupt_checkpoint is None
    assert {p.name: p.read_bytes() for p in (tmp_path / "other").iterdir()} == files
    assert not (tmp_path / "last.ckpt").exists()


def test_resume_from_last_without_a_checkpoint_starts_afresh(tmp_path: Path) -> None:
    trainer = _fit("classifier", tmp_path / "new", epochs=1, resume_from="last")
    assert len(trainer.history) == 1
    assert (tmp_path / "new" / "last.ckpt").is_file()


def test_state_dict_is_plain_and_loads_with_weights_only(tmp_path: Path) -> None:
    trainer = _fit("regressor", tmp_path / "run", epochs=1)
    state = trainer.state_dict()
    check_plain(state, "trainer")
    torch.save(state, tmp_path / "state.pt")
    loaded = torch.load(tmp_path / "state.pt", weights_only=True)
    assert loaded["epoch"] == 1
    assert loaded["position"] == 0
    assert loaded["history"] == trainer.history.state_dict()
    assert set(loaded["rng"]) >= {"python", "numpy", "torch", "shuffle", "teacher"}


def test_resuming_mid_epoch_with_another_batch_size_is_refused(tmp_path: Path) -> None:
    _fit("classifier", tmp_path / "stopped", extra=(InterruptAt(6),))
    x, y = _data("classifier")
    trainer = Trainer(max_epochs=4, batch_size=10, progress=False)
    with pytest.raises(CheckpointError, match=r"batch_size = 12 to resume in the middle"):
        trainer.fit(_model("classifier"), (x, y), resume_from=tmp_path / "stopped" / "last.ckpt")


def test_resuming_into_another_model_is_refused(tmp_path: Path) -> None:
    _fit("classifier", tmp_path / "run", epochs=1)
    x, y = _data("classifier")
    other = SequenceClassifier(3, 3, 16, cell="gru")
    with pytest.raises(CheckpointMismatchError, match="hidden_size"):
        Trainer(progress=False).fit(other, (x, y), resume_from=tmp_path / "run" / "last.ckpt")


def test_a_loss_that_becomes_nan_stops_and_leaves_the_checkpoint_from_before(
    tmp_path: Path,
) -> None:
    calls = {"n": 0}

    def loss_nan_at_step_6(output: Tensor, target: Tensor) -> Tensor:
        calls["n"] += output.requires_grad  # count training steps only
        loss = F.cross_entropy(output, target)
        return loss * math.inf if calls["n"] == 7 else loss  # the 7th step is step 6

    x, y = _data("classifier")
    trainer = _trainer("classifier", tmp_path / "run")
    trainer.loss_fn = loss_nan_at_step_6
    with pytest.raises(TrainingDivergedError, match=r"became inf at epoch 1, step 6") as caught:
        trainer.fit(_model("classifier"), (x, y), val=(x[:20], y[:20]))
    assert (caught.value.epoch, caught.value.step) == (1, 6)
    assert "last.ckpt" in str(caught.value)
    checkpoint = load_checkpoint(tmp_path / "run" / "last.ckpt")
    assert checkpoint["trainer"]["global_step"] == 4  # written at the end of epoch 0
    assert all(torch.isfinite(v).all() for v in checkpoint["model"]["state_dict"].values())


class Failing(Callback):
    def __init__(self) -> None:
        self.error = ValueError("boom")
        self.seen: list[BaseException] = []

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        raise self.error

    def on_exception(self, trainer: Any, exc: BaseException) -> None:
        self.seen.append(exc)


def test_an_exception_in_a_callback_reaches_on_exception_and_is_reraised_unchanged() -> None:
    failing = Failing()
    x, y = _data("classifier")
    with pytest.raises(ValueError, match="boom") as caught:
        Trainer(progress=False, callbacks=[failing]).fit(_model("classifier"), (x, y))
    assert caught.value is failing.error
    assert failing.seen == [failing.error]


class InterruptAfterUpdate(Trainer):
    """Sends itself SIGINT right after the optimizer update of the given global step."""

    def __init__(self, kill_at: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kill_at = kill_at

    def optimizer_step(self, loss: Tensor) -> None:
        super().optimizer_step(loss)
        if self.global_step == self.kill_at:
            os.kill(os.getpid(), signal.SIGINT)


def _interrupted_then_resumed(tmp_path: Path, trainer: Trainer) -> dict[str, Any]:
    """Fit ``trainer`` (interrupted), resume in a fresh Trainer from another model's weights."""
    x, y = _data("classifier")
    trainer.fit(_model("classifier"), (x, y), val=(x[:20], y[:20]))
    assert trainer.interrupted
    resumed = _fit("classifier", tmp_path / "resumed", resume_from=trainer.interrupt_checkpoint)
    resumed.save_checkpoint(tmp_path / "resumed.ckpt")
    return load_checkpoint(tmp_path / "resumed.ckpt")


def _like(trainer_class: type[Trainer], folder: Path, **extra: Any) -> Any:
    """A Trainer of ``trainer_class`` with the options of :func:`_trainer`."""
    model = _trainer("classifier", folder)
    return trainer_class(
        max_epochs=4,
        batch_size=12,
        optimizer="adamw",
        scheduler=model.scheduler_factory,
        seed=5,
        callbacks=model.callbacks,
        progress=False,
        **extra,
    )


def test_a_sigint_right_after_the_update_commits_the_step_and_resumes_exactly(
    tmp_path: Path,
) -> None:
    straight = _straight("classifier", tmp_path)
    trainer = _like(InterruptAfterUpdate, tmp_path / "stopped", kill_at=6)
    resumed = _interrupted_then_resumed(tmp_path, trainer)
    saved = load_checkpoint(tmp_path / "stopped" / "last.ckpt")["trainer"]
    assert (saved["epoch"], saved["position"], saved["global_step"]) == (1, 2, 6)
    _assert_same_run(straight, resumed)


class SigintInSchedulerStep(torch.optim.lr_scheduler.StepLR):
    """StepLR that sends SIGINT in the middle of its step at the end of epoch 1."""

    def step(self, epoch: int | None = None) -> None:
        if self.last_epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)
        super().step(epoch)


def test_a_sigint_inside_the_epoch_end_scheduler_step_resumes_exactly(tmp_path: Path) -> None:
    straight = _straight("classifier", tmp_path)
    trainer = _trainer("classifier", tmp_path / "stopped")
    trainer.scheduler_factory = lambda opt: SigintInSchedulerStep(opt, step_size=1, gamma=0.7)
    resumed = _interrupted_then_resumed(tmp_path, trainer)
    epochs = [r["epoch"] for r in resumed["trainer"]["history"]["records"]]
    assert epochs == [0, 1, 2, 3]
    _assert_same_run(straight, resumed)


def test_a_sigint_between_the_epoch_increment_and_the_reset_skips_no_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight = _straight("classifier", tmp_path)
    reset = RunState.reset_epoch

    def reset_after_sigint(run: RunState) -> None:
        if run.epoch == 2 and run.epoch_finished:
            os.kill(os.getpid(), signal.SIGINT)
        reset(run)

    monkeypatch.setattr(RunState, "reset_epoch", reset_after_sigint)
    trainer = _trainer("classifier", tmp_path / "stopped")
    x, y = _data("classifier")
    trainer.fit(_model("classifier"), (x, y), val=(x[:20], y[:20]))
    monkeypatch.setattr(RunState, "reset_epoch", reset)
    assert trainer.interrupted
    saved = load_checkpoint(tmp_path / "stopped" / "last.ckpt")["trainer"]
    assert (saved["epoch"], saved["position"]) == (2, 0)
    resumed = _fit("classifier", tmp_path / "resumed", resume_from=trainer.interrupt_checkpoint)
    resumed.save_checkpoint(tmp_path / "resumed.ckpt")
    _assert_same_run(straight, load_checkpoint(tmp_path / "resumed.ckpt"))


def _weights(model: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(model: torch.nn.Module, before: dict[str, Tensor]) -> bool:
    return all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def _fit_in(folder: Path, *callbacks: Callback, epochs: int = 3, **kwargs: Any) -> Trainer:
    """The classifier run of the Ctrl-C tests, checkpointed into ``folder`` (last.ckpt only)."""
    trainer = Trainer(
        epochs,
        12,
        seed=3,
        callbacks=[ModelCheckpoint(folder, save_top_k=0), *callbacks],
        default_root_dir=folder.parent,
        progress=False,
    )
    trainer.fit(_model("classifier"), _data("classifier"), **kwargs)
    return trainer


def _same_parameters(a: Trainer, b: Trainer) -> bool:
    assert a.model is not None
    assert b.model is not None
    pairs = zip(a.model.parameters(), b.model.parameters(), strict=True)
    return all(torch.equal(x, y) for x, y in pairs)


def test_resume_from_last_never_takes_another_experiments_file_in_the_default_root(
    tmp_path: Path,
) -> None:
    """An interrupted run without ModelCheckpoint left root/last.ckpt; a new one ignores it."""
    x, y = _data("classifier")
    old = Trainer(
        max_epochs=2,
        batch_size=12,
        progress=False,
        seed=5,
        default_root_dir=tmp_path / "runs",
        callbacks=[InterruptAt(2)],
    )
    old.fit(_model("classifier"), (x, (y + 1) % 3))  # other labels, same sizes
    assert old.interrupt_checkpoint == tmp_path / "runs" / "last.ckpt"
    fresh = _fit("classifier", tmp_path / "fresh", epochs=1)
    new = _trainer("classifier", tmp_path / "new", epochs=1)
    new.options = dataclasses.replace(new.options, default_root_dir=tmp_path / "runs")
    history = new.fit(_model("classifier"), (x, y), val=(x[:20], y[:20]), resume_from="last")
    assert [r["epoch"] for r in history] == [0]
    assert new.global_step == 4
    assert new.model is not None
    assert fresh.model is not None
    for key, value in new.model.state_dict().items():
        assert torch.equal(value, fresh.model.state_dict()[key]), key  # trained afresh


def test_resume_from_last_without_a_model_checkpoint_uses_the_default_root(
    tmp_path: Path,
) -> None:
    x, y = _data("classifier")
    options: dict[str, Any] = {"batch_size": 12, "progress": False, "seed": 5}
    stopped = Trainer(
        max_epochs=2, default_root_dir=tmp_path, callbacks=[InterruptAt(6)], **options
    )
    stopped.fit(_model("classifier"), (x, y))
    resumed = Trainer(max_epochs=2, default_root_dir=tmp_path, **options)
    resumed.fit(_model("classifier", seed=2), (x, y), resume_from="last")
    assert resumed.global_step == 8
    assert [r["epoch"] for r in resumed.history] == [0, 1]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda x, y: (x, (y + 1) % 3), "fingerprint"),
        (lambda x, y: (x[:30], y[:30]), "num_samples"),
        (lambda x, y: (x[:, :5], y), "seq_len"),
    ],
)
def test_resuming_on_other_training_data_is_refused_before_the_model_changes(
    tmp_path: Path, change: Any, field: str
) -> None:
    _fit("classifier", tmp_path / "stopped", extra=(InterruptAt(6),))
    x, y = change(*_data("classifier"))
    model = _model("classifier", seed=2)
    before = _weights(model)
    trainer = _trainer("classifier", tmp_path / "other")
    with pytest.raises(CheckpointMismatchError, match=rf"training data.*{field}: checkpoint"):
        trainer.fit(model, (x, y), resume_from=tmp_path / "stopped" / "last.ckpt")
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("drop_class_name", [False, True])
def test_resuming_with_another_optimizer_is_refused_before_the_model_changes(
    tmp_path: Path, drop_class_name: bool
) -> None:
    _fit("classifier", tmp_path / "stopped", epochs=1)
    path = tmp_path / "stopped" / "last.ckpt"
    if drop_class_name:  # a checkpoint without the class name: the settings tell
        checkpoint = load_checkpoint(path)
        del checkpoint["trainer"]["optimizer_class"]
        torch.save(checkpoint, path)
    x, y = _data("classifier")
    model = _model("classifier", seed=2)
    before = _weights(model)
    trainer = _trainer("classifier", tmp_path / "other")
    trainer.optimizer_spec = lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9)
    expected = (
        "lacks the settings"
        if drop_class_name
        else r"^Expected the optimizer class AdamW to resume the checkpoint, but this run builds "
        r"SGD\. "
    )
    with pytest.raises(CheckpointMismatchError, match=expected):
        trainer.fit(model, (x, y), resume_from=path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize(
    ("setting", "shown"),
    [
        ("lr", r"lr=0\.001 \(this run: 0\.5\)"),
        ("weight_decay", r"weight_decay=0\.01 \(this run: 0\.5\)"),
    ],
)
def test_resuming_with_another_setting_keeps_the_checkpoints_and_warns_with_both(
    tmp_path: Path, setting: str, shown: str
) -> None:
    straight = _straight("classifier", tmp_path)
    _fit("classifier", tmp_path / "stopped", epochs=2)
    x, y = _data("classifier")
    trainer = _trainer("classifier", tmp_path / "resumed")
    setattr(trainer, setting, 0.5)
    with pytest.warns(UserWarning, match=shown):
        trainer.fit(
            _model("classifier", seed=2),
            (x, y),
            val=(x[:20], y[:20]),
            resume_from=tmp_path / "stopped" / "last.ckpt",
        )
    trainer.save_checkpoint(tmp_path / "resumed.ckpt")
    _assert_same_run(straight, load_checkpoint(tmp_path / "resumed.ckpt"))


if __name__ == "__main__":
    _worker(sys.argv[1:])
