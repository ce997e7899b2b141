"""Tests for rnnkit.callbacks, driven by a fake trainer with the attributes DESIGN.md fixes."""

from __future__ import annotations

import dataclasses
import inspect
import io
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import rnnkit.callbacks._base as callbacks_module
from rnnkit import SequenceClassifier, Trainer
from rnnkit.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ProgressBar,
)
from rnnkit.callbacks.model_checkpoint import ModelCheckpoint
from rnnkit.metrics import get_metric, resolve_mode
from rnnkit.training.history import History


class FakeTrainer:
    """The trainer attributes a callback may read (DESIGN.md), around a tiny linear model."""

    def __init__(self, optimizer_groups: int = 1) -> None:
        torch.manual_seed(0)
        self.model = nn.Linear(3, 2)
        weight, bias = self.model.weight, self.model.bias
        groups: list[dict[str, Any]] = [{"params": [weight, bias]}]
        if optimizer_groups == 2:
            groups = [{"params": [weight]}, {"params": [bias], "lr": 0.5}]
        self.optimizer = torch.optim.SGD(groups, lr=0.1)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=1, gamma=0.5)
        self.history = History()
        self.epoch = 0
        self.global_step = 0
        self.device = torch.device("cpu")
        self.should_stop = False
        self.callbacks: list[Callback] = []
        self.is_global_zero = True
        self.last_train_metrics: dict[str, float] = {}
        self.last_val_metrics: dict[str, float] = {}
        self.max_epochs = 10
        self.batch_size = 4
        self.log_every_n_steps = 2


def _train_epoch(trainer: FakeTrainer, epoch: int, batches: int) -> None:
    for batch_idx in range(batches):
        for cb in trainer.callbacks:
            cb.on_batch_start(trainer, batch_idx)
        with torch.no_grad():  # "training": weights become a known function of the epoch
            for p in trainer.model.parameters():
                p.fill_(float(epoch + 1))
        trainer.optimizer.step()  # no gradients: changes nothing, keeps the scheduler quiet
        trainer.global_step += 1
        outputs: dict[str, Tensor | float] = {"loss": torch.tensor(1.0 / (epoch + 1))}
        for cb in trainer.callbacks:
            cb.on_batch_end(trainer, batch_idx, outputs)


def run_fit(
    trainer: FakeTrainer,
    val_losses: Sequence[float],
    *,
    start_epoch: int = 0,
    batches: int = 2,
    history_first: bool = False,
) -> list[int]:
    """A minimal fit loop in the documented hook order; returns the epochs that ran."""
    ran = []
    for cb in trainer.callbacks:
        cb.on_fit_start(trainer)
    for epoch in range(start_epoch, len(val_losses)):
        trainer.epoch = epoch
        for cb in trainer.callbacks:
            cb.on_epoch_start(trainer, epoch)
        _train_epoch(trainer, epoch, batches)
        trainer.last_val_metrics = {"loss": val_losses[epoch]}
        for cb in trainer.callbacks:
            cb.on_validation_end(trainer, dict(trainer.last_val_metrics))
        logs = {"epoch": float(epoch), "loss": 1.0 / (epoch + 1), "val_loss": val_losses[epoch]}
        if history_first:
            trainer.history.append(logs)
        for cb in trainer.callbacks:
            cb.on_epoch_end(trainer, epoch, logs)
        if not history_first:
            trainer.history.append(logs)
        trainer.scheduler.step()
        ran.append(epoch)
        if trainer.should_stop:
            break
    for cb in trainer.callbacks:
        cb.on_fit_end(trainer)
    return ran


def reference_stop(
    values: Sequence[float], patience: int, min_delta: float, mode: str
) -> tuple[int | None, int]:
    """Stopping epoch (None: never) and best epoch, written out from the definition."""
    sign = 1.0 if mode == "min" else -1.0
    best, best_epoch, bad = math.inf, -1, 0
    for epoch, value in enumerate(values):
        score = sign * value
        if score < best - min_delta:
            best, best_epoch, bad = score, epoch, 0
            continue
        bad += 1
        if bad == patience:
            return epoch, best_epoch
    return None, best_epoch


# -- Callback base --------------------------------------------------------------------------

HOOKS = {
    "on_fit_start": ["trainer"],
    "on_fit_end": ["trainer"],
    "on_epoch_start": ["trainer", "epoch"],
    "on_epoch_end": ["trainer", "epoch", "logs"],
    "on_batch_start": ["trainer", "batch_idx"],
    "on_batch_end": ["trainer", "batch_idx", "outputs"],
    "on_validation_end": ["trainer", "metrics"],
    "on_exception": ["trainer", "exc"],
}


def test_base_hooks_have_the_documented_signatures() -> None:
    for name, params in HOOKS.items():
        signature = inspect.signature(getattr(Callback, name))
        assert list(signature.parameters)[1:] == params, name


def test_base_hooks_are_no_ops() -> None:
    bare, with_base = FakeTrainer(), FakeTrainer()
    with_base.callbacks = [Callback(), Callback()]
    assert run_fit(with_base, [1.0, 0.5, 0.7]) == run_fit(bare, [1.0, 0.5, 0.7]) == [0, 1, 2]
    for name in ("epoch", "global_step", "should_stop", "last_val_metrics"):
        assert getattr(with_base, name) == getattr(bare, name), name
    assert with_base.history == bare.history
    assert "lr" not in with_base.history.keys
    assert torch.equal(with_base.model.weight, bare.model.weight)
    cb, logs = Callback(), {"loss": 1.0}
    assert cb.on_epoch_end(with_base, 0, logs) is None  # type: ignore[func-returns-value]
    assert logs == {"loss": 1.0}
    cb.on_exception(with_base, RuntimeError("boom"))  # does not raise or swallow anything
    assert cb.state_dict() == {}
    cb.load_state_dict({"anything": 1})


# -- EarlyStopping --------------------------------------------------------------------------

CASES = [
    ([1.0, 0.8, 0.85, 0.9, 0.95, 0.7], 3, 0.0, "min"),  # stops at 4, best 1
    ([1.0, 0.9, 0.8, 0.7, 0.6, 0.5], 2, 0.0, "min"),  # never stops
    ([1.0, 0.95, 0.92, 0.91, 0.5], 2, 0.05, "min"),  # small gains do not count: stops at 3
    ([0.5, 0.6, 0.6, 0.59, 0.58], 2, 0.0, "max"),  # accuracy: ties do not improve
    ([1.0, math.nan, math.nan, 0.9], 2, 0.0, "min"),  # NaN never improves: stops at 2
    ([2.0, 1.0, 1.5, 0.5, 0.6], 1, 0.0, "min"),  # patience 1: first bad epoch stops
]


@pytest.mark.parametrize(("values", "patience", "min_delta", "mode"), CASES)
def test_early_stopping_stops_at_the_right_epoch(
    values: list[float], patience: int, min_delta: float, mode: Any
) -> None:
    trainer = FakeTrainer()
    es = EarlyStopping("val_loss", mode=mode, patience=patience, min_delta=min_delta)
    trainer.callbacks = [es]
    ran = run_fit(trainer, values)
    stop, best = reference_stop(values, patience, min_delta, mode)
    assert ran[-1] == (len(values) - 1 if stop is None else stop)
    assert es.stopped_epoch == (-1 if stop is None else stop)
    assert es.best_epoch == best
    assert es.best == values[best]
    # weights of epoch e are all e + 1: the best epoch's weights are back in the model
    for p in trainer.model.parameters():
        assert torch.equal(p, torch.full_like(p, best + 1.0))


def test_hand_worked_case() -> None:
    trainer = FakeTrainer()
    trainer.callbacks = [EarlyStopping(patience=3)]
    assert run_fit(trainer, [1.0, 0.8, 0.85, 0.9, 0.95, 0.7]) == [0, 1, 2, 3, 4]
    assert torch.equal(trainer.model.weight, torch.full((2, 3), 2.0))  # epoch 1's


def test_without_restore_keeps_last_weights() -> None:
    trainer = FakeTrainer()
    es = EarlyStopping(patience=2, restore_best_weights=False)
    trainer.callbacks = [es]
    run_fit(trainer, [1.0, 2.0, 3.0, 0.1])
    assert es.best_weights is None
    assert torch.equal(trainer.model.weight, torch.full((2, 3), 3.0))  # epoch 2's


def test_best_weights_are_a_copy() -> None:
    trainer = FakeTrainer()
    es = EarlyStopping(patience=5)
    trainer.callbacks = [es]
    run_fit(trainer, [1.0, 2.0])
    assert es.best_weights is not None
    assert torch.equal(es.best_weights["weight"], torch.full((2, 3), 1.0))
    assert es.best_weights["weight"].data_ptr() != trainer.model.weight.data_ptr()


def test_state_dict_round_trip_resumes_identically(tmp_path: Path) -> None:
    values = [1.0, 0.7, 0.9, 0.8, 0.75, 0.95, 0.6]
    straight = FakeTrainer()
    straight.callbacks = [EarlyStopping(patience=3)]
    ran_straight = run_fit(straight, values)

    first = FakeTrainer()
    es = EarlyStopping(patience=3)
    first.callbacks = [es]
    run_fit(first, values[:3])  # epochs 0-2; restores epoch 1's weights at its fit end
    torch.save(es.state_dict(), tmp_path / "es.pt")
    state = torch.load(tmp_path / "es.pt", weights_only=True)

    resumed = FakeTrainer()
    es2 = EarlyStopping(patience=3)
    es2.load_state_dict(state)
    assert es2.state_dict()["wait"] == es.wait == 1
    resumed.callbacks = [es2]
    resumed.global_step = 6  # a resumed run: on_fit_start must not reset
    ran_resumed = run_fit(resumed, values, start_epoch=3)
    assert ran_straight == [0, 1, 2, 3, 4] == [0, 1, 2, *ran_resumed]
    assert (es2.best, es2.best_epoch, es2.stopped_epoch) == (0.7, 1, 4)
    assert torch.equal(resumed.model.weight, straight.model.weight)


def test_state_dict_holds_plain_types() -> None:
    trainer = FakeTrainer()
    es = EarlyStopping(mode="max")
    state = es.state_dict()
    assert state["best"] == -math.inf
    assert state["best_weights"] is None
    with pytest.raises(ValueError, match=r"mode='max', but got monitor='val_loss', mode='min'"):
        es.load_state_dict(EarlyStopping().state_dict())
    with pytest.raises(ValueError, match=r"monitor='val_loss'.*monitor='loss'"):
        es.load_state_dict(EarlyStopping("loss", mode="max").state_dict())
    trainer.callbacks = [es]
    run_fit(trainer, [0.1])
    assert es.best_weights is not None
    assert set(es.state_dict()["best_weights"]) == {"weight", "bias"}


def test_fit_start_resets_a_reused_callback() -> None:
    es = EarlyStopping(patience=1)
    first = FakeTrainer()
    first.callbacks = [es]
    run_fit(first, [0.1, 0.2])
    assert es.stopped_epoch == 1
    second = FakeTrainer()
    second.callbacks = [es]
    assert run_fit(second, [5.0, 4.0, 3.0]) == [0, 1, 2]  # 0.1 from the first fit is gone
    assert es.best == 3.0


def test_missing_monitor() -> None:
    trainer = FakeTrainer()
    with pytest.raises(KeyError, match=r"'val_accuracy'.*\['epoch', 'loss', 'val_loss'\]"):
        EarlyStopping("val_accuracy").on_epoch_end(
            trainer, 0, {"epoch": 0.0, "loss": 1.0, "val_loss": 1.0}
        )
    lenient = EarlyStopping("val_accuracy", strict=False, patience=1)
    trainer.callbacks = [lenient]
    assert run_fit(trainer, [3.0, 2.0, 4.0]) == [0, 1, 2]
    assert lenient.best_epoch == -1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "lowest"}, "'min', 'max' or 'auto'"),
        ({"patience": 0}, "`patience` >= 1, but got 0"),
        ({"min_delta": -0.1}, "min_delta"),
        ({"min_delta": math.nan}, "min_delta"),
    ],
)
def test_early_stopping_argument_checks(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EarlyStopping(**kwargs)


@pytest.mark.parametrize("patience", [2.5, True, "3"])
def test_early_stopping_refuses_a_patience_that_is_not_an_int(patience: Any) -> None:
    with pytest.raises(TypeError, match=rf"`patience` to be an int, but got {patience!r}"):
        EarlyStopping(patience=patience)


# -- ProgressBar ----------------------------------------------------------------------------


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_prints_a_line_per_epoch_off_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    trainer = FakeTrainer()
    trainer.max_epochs = 2
    bar = ProgressBar()
    trainer.callbacks = [bar]
    run_fit(trainer, [1.0, 0.5])
    assert not bar.active
    assert bar.mode == "lines"
    assert stderr.getvalue().splitlines() == [
        "Epoch 1/2 - loss=1 val_loss=1",
        "Epoch 2/2 - loss=0.5 val_loss=0.5",
    ]


def test_progress_line_shows_time_and_every_metric() -> None:
    logs = {"epoch": 2.0, "loss": 0.123456, "accuracy": 0.875, "lr": 1e-3, "time": 1.234}
    line = callbacks_module._epoch_line(2, 10, logs)
    assert line == "Epoch 3/10 - 1.2s - loss=0.1235 accuracy=0.875 lr=0.001"


class _FakeShell:
    config: dict[str, Any] = {"IPKernelApp": {}}  # noqa: RUF012


def test_progress_bar_uses_the_notebook_widget_in_jupyter(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_ipython = type(sys)("IPython")
    fake_ipython.get_ipython = _FakeShell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", fake_ipython)
    opened: list[dict[str, Any]] = []

    class Widget:
        def __init__(self, **kwargs: Any) -> None:
            opened.append(kwargs)

        def update(self, n: int) -> None: ...

        def set_postfix(self, postfix: dict[str, str], refresh: bool) -> None: ...

        def close(self) -> None: ...

    def fake_import(notebook: bool = False) -> Any:
        assert notebook  # tqdm.auto: the widget in a kernel, a text bar without ipywidgets
        return Widget

    monkeypatch.setattr(callbacks_module, "_import_tqdm", fake_import)
    trainer = FakeTrainer()
    bar = ProgressBar()
    trainer.callbacks = [bar]
    run_fit(trainer, [1.0, 0.5])
    assert bar.mode == "notebook"
    assert [kw["desc"] for kw in opened] == ["Epoch 1/10", "Epoch 2/10"]
    assert all("file" not in kw for kw in opened)  # the widget draws in the cell


def test_progress_bar_draws_on_a_tty() -> None:
    stream = FakeTTY()
    trainer = FakeTrainer()
    trainer.max_epochs = 2
    bar = ProgressBar(file=stream)
    trainer.callbacks = [bar]
    run_fit(trainer, [1.0, 0.5], batches=4)
    text = stream.getvalue()
    assert bar.active
    assert "Epoch 1/2" in text
    assert "Epoch 2/2" in text
    assert "samples/s" in text
    assert "val_loss=0.5" in text


@pytest.mark.parametrize("reason", ["disabled", "not rank 0"])
def test_progress_bar_stays_off(reason: str) -> None:
    stream = FakeTTY()
    trainer = FakeTrainer()
    trainer.is_global_zero = reason != "not rank 0"
    bar = ProgressBar(enabled=reason != "disabled", file=stream)
    trainer.callbacks = [bar]
    run_fit(trainer, [1.0])
    assert not bar.active
    assert stream.getvalue() == ""


def test_progress_bar_reads_the_loss_only_every_n_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[float] = []
    original = callbacks_module._as_float

    def counting(value: Tensor | float) -> float:
        reads.append(original(value))
        return reads[-1]

    monkeypatch.setattr(callbacks_module, "_as_float", counting)
    trainer = FakeTrainer()
    bar = ProgressBar(file=FakeTTY(), refresh_every_n_steps=3)
    bar.on_fit_start(trainer)
    bar.on_epoch_start(trainer, 0)
    for batch_idx in range(7):
        bar.on_batch_end(trainer, batch_idx, {"loss": torch.tensor(float(batch_idx))})
    assert reads == [2.0, 5.0]  # after batches 3 and 6 only
    bar.on_exception(trainer, KeyboardInterrupt())
    assert bar._bar is None


def test_progress_bar_without_tqdm_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # makes `import tqdm` fail
    monkeypatch.setattr(callbacks_module, "_tqdm_note_shown", False)
    stream = FakeTTY()
    trainer = FakeTrainer()
    trainer.callbacks = [ProgressBar(file=stream)]
    with pytest.warns(UserWarning, match=r"pip install tqdm` \(rnnkit\'s `progress` extra\)"):
        assert run_fit(trainer, [1.0, 0.5]) == [0, 1]
    again = FakeTrainer()
    again.callbacks = [ProgressBar(file=stream)]
    run_fit(again, [1.0])  # no second warning (warnings are errors in this suite)
    lines = stream.getvalue().splitlines()  # a line per epoch instead of the bar
    assert [line.split(" - ")[0] for line in lines] == ["Epoch 1/10", "Epoch 2/10", "Epoch 1/10"]


def test_progress_bar_argument_check() -> None:
    with pytest.raises(ValueError, match="refresh_every_n_steps"):
        ProgressBar(refresh_every_n_steps=0)
    with pytest.raises(TypeError, match="`refresh_every_n_steps` to be an int"):
        ProgressBar(refresh_every_n_steps=2.5)  # type: ignore[arg-type]


# -- LearningRateMonitor --------------------------------------------------------------------


@pytest.mark.parametrize("history_first", [False, True])
def test_learning_rate_monitor_records_each_epochs_rate(history_first: bool) -> None:
    trainer = FakeTrainer()
    trainer.callbacks = [LearningRateMonitor()]
    run_fit(trainer, [1.0, 0.9, 0.8], history_first=history_first)
    # StepLR halves the rate after each epoch: the rate each epoch trained with
    assert trainer.history["lr"] == pytest.approx([0.1, 0.05, 0.025])


def test_learning_rate_monitor_per_param_group() -> None:
    trainer = FakeTrainer(optimizer_groups=2)
    monitor = LearningRateMonitor(key="learning_rate")
    trainer.callbacks = [monitor]
    run_fit(trainer, [1.0, 0.9])
    assert trainer.history["learning_rate"] == pytest.approx([0.1, 0.05])
    assert trainer.history["learning_rate_pg1"] == pytest.approx([0.5, 0.25])
    assert monitor.read(trainer.optimizer) == pytest.approx(
        {"learning_rate": 0.025, "learning_rate_pg1": 0.125}
    )


# -- where ModelCheckpoint lives ---------------------------------------------------------


def test_model_checkpoint_is_a_callback_exported_by_the_callbacks_package() -> None:
    import rnnkit.callbacks

    assert rnnkit.callbacks.ModelCheckpoint is rnnkit.ModelCheckpoint
    assert issubclass(rnnkit.ModelCheckpoint, Callback)
    assert rnnkit.ModelCheckpoint.__module__ == "rnnkit.callbacks.model_checkpoint"


@pytest.mark.parametrize(
    ("monitor", "mode", "expected"),
    [
        ("val_accuracy", "auto", "max"),
        ("accuracy", "auto", "max"),
        ("val_top5_accuracy", "auto", "max"),
        ("val_loss", "auto", "min"),
        ("val_mse", "auto", "min"),
        ("val_rollout_mse", "auto", "min"),
        (None, "auto", "min"),
        ("val_accuracy", "min", "min"),  # an explicit mode is kept
        ("val_loss", "max", "max"),
    ],
)
def test_auto_mode_follows_the_monitored_metric(
    monitor: str | None, mode: Any, expected: str
) -> None:
    assert resolve_mode(monitor, mode) == expected
    if monitor is not None:
        assert EarlyStopping(monitor=monitor, mode=mode).mode == expected
    assert ModelCheckpoint("unused", monitor=monitor, mode=mode).mode == expected


@pytest.mark.parametrize("kind", ["early_stopping", "model_checkpoint"])
def test_auto_mode_that_a_users_metric_contradicts_is_refused_before_training(
    tmp_path: Path, kind: str
) -> None:
    # "hit_rate" is unknown by name, so "auto" gives "min"; the fit's Metric says higher is
    # better: watching it downwards would keep the worst epoch without a word.
    hit_rate = dataclasses.replace(get_metric("accuracy"), name="hit_rate")
    assert resolve_mode("val_hit_rate", "auto") == "min"
    assert resolve_mode("val_hit_rate", "auto", [hit_rate]) == "max"
    torch.manual_seed(0)
    x, y = torch.randn(40, 5, 3), torch.randint(0, 2, (40,))

    def fit(mode: Any) -> Trainer:
        watcher: Callback = (
            EarlyStopping("val_hit_rate", mode=mode, patience=50)
            if kind == "early_stopping"
            else ModelCheckpoint(tmp_path / str(mode), monitor="val_hit_rate", mode=mode)
        )
        trainer = Trainer(3, 8, lr=0.05, metrics=[hit_rate], callbacks=[watcher], progress=False)
        trainer.fit(SequenceClassifier(3, 2, 8), (x, y), val=(x, y))
        return trainer

    owner = "EarlyStopping" if kind == "early_stopping" else "ModelCheckpoint"
    with pytest.raises(
        ValueError,
        match=rf"^Expected {owner}'s mode='auto' to watch 'val_hit_rate' as the fit's metric "
        r"of that name says \(higher is better: mode='max'\), but the name alone gives "
        rf"mode='min'\. Hint: pass mode='max' to the {owner}\.$",
    ):
        fit("auto")
    assert fit("max").global_step == 3 * 5


def test_early_stopping_on_accuracy_by_default_keeps_the_best_epoch() -> None:
    # Rising then falling accuracy. With the old default mode="min" this stopped after
    # epoch 1 and restored epoch 0, the worst; "auto" watches accuracy upwards.
    trainer = FakeTrainer()
    stopper = EarlyStopping(monitor="val_accuracy", patience=1)
    stopper.on_fit_start(trainer)
    ran = []
    for epoch, accuracy in enumerate([0.5, 0.6, 0.8, 0.7, 0.9]):
        with torch.no_grad():
            trainer.model.weight.fill_(float(epoch))
        stopper.on_epoch_end(trainer, epoch, {"val_accuracy": accuracy})
        ran.append(epoch)
        if trainer.should_stop:
            break
    stopper.on_fit_end(trainer)
    assert ran == [0, 1, 2, 3]  # stopped after the first epoch without improvement
    assert stopper.best == 0.8
    assert stopper.best_epoch == 2
    assert torch.all(trainer.model.weight == 2.0)  # the best epoch's weights restored


def test_the_docs_callback_snippet_records_the_worst_batch_loss(
    capsys: pytest.CaptureFixture[str],
) -> None:
    snippet = Path(__file__).resolve().parents[1] / "docs" / "_snippets" / "custom_callback.py"
    code = snippet.read_text(encoding="utf-8").replace(
        "Trainer(max_epochs", "Trainer(progress=False, max_epochs"
    )
    scope: dict[str, Any] = {"__name__": "custom_callback"}
    exec(compile(code, str(snippet), "exec"), scope)
    printed = capsys.readouterr().out.strip()
    history = scope["history"]
    worst = history["worst_batch_loss"]
    assert printed == str([round(value, 3) for value in worst])
    assert len(worst) == 3
    assert all(w >= mean for w, mean in zip(worst, history["loss"], strict=True))


def test_early_stopping_not_strict_trains_without_the_monitored_key() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(32, 5, 3), torch.randint(0, 2, (32,))
    stop = EarlyStopping("val_loss", strict=False, patience=1)
    with pytest.warns(
        UserWarning, match=r"^EarlyStopping\(strict=False\) skips every epoch: .*'val_loss'"
    ):
        history = Trainer(3, 8, callbacks=[stop], progress=False).fit(
            SequenceClassifier(3, 2, 8), (x, y)
        )
    assert len(history) == 3  # no validation data: every epoch skipped, none stopped the fit
    assert stop.best_epoch == -1
    with pytest.raises(ValueError, match="val_loss"):
        Trainer(3, 8, callbacks=[EarlyStopping("val_loss")], progress=False).fit(
            SequenceClassifier(3, 2, 8), (x, y)
        )
