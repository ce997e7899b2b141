"""The Trainer against references: hand-written loops, hand computations, the model itself."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.callbacks import Callback, EarlyStopping
from rnnkit.callbacks.model_checkpoint import ModelCheckpoint
from rnnkit.data import SequenceDataset
from rnnkit.models import Seq2SeqRegressor, SequenceClassifier
from rnnkit.training import StepOutput
from rnnkit.training.trainer import Trainer


def _class_data(
    n: int = 96, steps: int = 6, width: int = 3, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Label = whether the first feature sums to a positive number (learnable, ~balanced)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, steps, width, generator=gen)
    return x, (x[:, :, 0].sum(dim=1) > 0).long()


def _wave_data(n: int = 12, steps: int = 16) -> tuple[Tensor, Tensor]:
    """Next-step pairs of phase-shifted sine waves, (n, steps, 1) each."""
    t = torch.linspace(0, 3, steps + 1)
    phases = torch.linspace(0, 3, n).unsqueeze(1)
    waves = torch.sin(t.unsqueeze(0) * 2 + phases).unsqueeze(-1)
    return waves[:, :-1].contiguous(), waves[:, 1:].contiguous()


def _classifier(seed: int = 1, **kwargs: Any) -> SequenceClassifier:
    torch.manual_seed(seed)
    options: dict[str, Any] = {"cell": "gru", **kwargs}
    return SequenceClassifier(3, 2, 12, **options)


def _regressor(seed: int = 1) -> Seq2SeqRegressor:
    torch.manual_seed(seed)
    return Seq2SeqRegressor(1, hidden_size=8)


def _weights_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(
        torch.equal(p, q)
        for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def _quiet(**kwargs: Any) -> Trainer:
    return Trainer(progress=False, **kwargs)


# -- it learns -----------------------------------------------------------------------------


def test_fit_learns_a_synthetic_task() -> None:
    x, y = _class_data(n=256, steps=8)
    model = _classifier()
    history = _quiet(max_epochs=8, batch_size=32, lr=1e-2, seed=0).fit(model, (x, y), val=(x, y))
    assert history[-1]["val_accuracy"] > 0.9  # chance is ~0.5
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert len(history) == 8
    assert history["epoch"] == list(range(8))


def _default_adam(params: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3)


@pytest.mark.parametrize(
    ("spec", "fused"),
    [("adam", True), (_default_adam, False)],
    ids=["named-adam-is-fused", "torch-default-adam"],
)
def test_fit_equals_a_hand_written_loop_bitwise(spec: Any, fused: bool) -> None:
    """Same permutations (a generator seeded with `seed`), same steps: the same weights."""
    x, y = _class_data(n=50)
    data = SequenceDataset(x, y)
    trained, by_hand = _classifier(), _classifier()
    history = _quiet(max_epochs=3, batch_size=16, seed=7, optimizer=spec).fit(trained, data)
    optimizer = torch.optim.Adam(by_hand.parameters(), lr=1e-3, fused=fused)
    gen = torch.Generator().manual_seed(7)
    epoch_losses = []
    for _ in range(3):
        order, total = torch.randperm(50, generator=gen), 0.0
        for start in range(0, 50, 16):
            xb, yb, _ = data.batch(order[start : start + 16])
            assert yb is not None
            loss = F.cross_entropy(by_hand(xb), yb)
            torch.autograd.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            total += float(loss.detach()) * len(yb)
        epoch_losses.append(total / 50)
    assert _weights_equal(trained, by_hand)
    assert history["loss"] == pytest.approx(epoch_losses, rel=1e-6)


def test_a_checkpoint_of_torchs_default_adam_resumes_with_it(tmp_path: Path) -> None:
    """A run saved before ``"adam"`` became fused continues with the Adam it was saved with."""
    x, y = _class_data(n=50)
    straight = _classifier()
    _quiet(max_epochs=4, batch_size=16, seed=3, optimizer=_default_adam).fit(straight, (x, y))
    resumed = _classifier()
    saving = [ModelCheckpoint(tmp_path)]
    first = _quiet(max_epochs=2, batch_size=16, seed=3, optimizer=_default_adam, callbacks=saving)
    first.fit(resumed, (x, y))
    second = _quiet(max_epochs=4, batch_size=16, seed=3)  # optimizer="adam": fused if new
    second.fit(resumed, (x, y), resume_from=str(tmp_path / "last.ckpt"))
    assert second.optimizer is not None
    assert not second.optimizer.param_groups[0]["fused"]
    assert _weights_equal(straight, resumed)
    # The optimizer is built unfused, not a fused one holding an unfused state: the gradient
    # scaler of "16-mixed" would pass a fused optimizer's arguments to the unfused update.
    assert not second.optimizer.defaults["fused"]
    scaler = torch.amp.GradScaler("cpu")
    torch.autograd.backward(scaler.scale(F.cross_entropy(resumed(x), y)))
    scaler.step(second.optimizer)  # raised AssertionError with a fused-built optimizer


# -- evaluate and predict --------------------------------------------------------------------


def test_evaluate_agrees_with_a_hand_computation() -> None:
    x, y = _class_data(n=50)
    model = _classifier()
    metrics = _quiet(batch_size=16, metrics=["accuracy", "top2_accuracy"]).evaluate(model, (x, y))
    with torch.no_grad():
        logits = model.eval()(x)
    assert metrics["loss"] == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-5)
    assert metrics["accuracy"] == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    assert metrics["top2_accuracy"] == 1.0


def test_evaluate_masks_padding_of_a_regressor() -> None:
    x, y = _wave_data(n=6, steps=10)
    lengths = torch.tensor([10, 7, 3, 10, 5, 1])
    model = _regressor()
    metrics = _quiet(batch_size=4, metrics=["mse", "mae"]).evaluate(model, (x, y, lengths))
    errors = []
    with torch.no_grad():
        for i, n in enumerate(lengths.tolist()):
            pred, _ = model(x[i : i + 1, :n])
            errors.append(pred[0] - y[i, :n])
    flat = torch.cat(errors)
    assert metrics["loss"] == pytest.approx(float(flat.square().mean()), rel=1e-5)
    assert metrics["mse"] == pytest.approx(metrics["loss"], rel=1e-6)
    assert metrics["mae"] == pytest.approx(float(flat.abs().mean()), rel=1e-5)


def test_predict_agrees_with_calling_the_model() -> None:
    x, _ = _class_data(n=40)
    model = _classifier(bidirectional=True)
    predicted = _quiet(batch_size=16).predict(model, x)
    with torch.no_grad():
        expected = model.eval()(x)
    assert predicted.shape == (40, 2)
    torch.testing.assert_close(predicted, expected)


def test_predict_of_a_regressor_in_tbptt_windows_equals_one_pass() -> None:
    x, _ = _wave_data(n=5, steps=12)
    model = _regressor()
    predicted = _quiet(batch_size=2, tbptt_steps=5).predict(model, x)
    with torch.no_grad():
        expected, _ = model(x)
    torch.testing.assert_close(predicted, expected)


# -- callbacks ------------------------------------------------------------------------------


class Recorder(Callback):
    """Records every hook call as a tuple."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def on_fit_start(self, trainer: Any) -> None:
        self.calls.append(("fit_start", trainer.epoch, trainer.global_step))

    def on_fit_end(self, trainer: Any) -> None:
        self.calls.append(("fit_end", trainer.epoch, trainer.global_step))

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        self.calls.append(("epoch_start", epoch))

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        self.calls.append(("epoch_end", epoch, sorted(logs)))

    def on_batch_start(self, trainer: Any, batch_idx: int) -> None:
        self.calls.append(("batch_start", batch_idx, trainer.global_step))

    def on_batch_end(self, trainer: Any, batch_idx: int, outputs: dict[str, Any]) -> None:
        self.calls.append(("batch_end", batch_idx, trainer.global_step, sorted(outputs)))

    def on_validation_end(self, trainer: Any, metrics: dict[str, float]) -> None:
        self.calls.append(("validation_end", sorted(metrics)))


def test_callbacks_are_called_in_the_documented_order() -> None:
    x, y = _class_data(n=20)
    recorder = Recorder()
    _quiet(max_epochs=2, batch_size=10, callbacks=[recorder]).fit(_classifier(), (x, y), (x, y))
    logs = ["accuracy", "epoch", "loss", "lr", "time", "val_accuracy", "val_loss"]
    outputs = ["batch_size", "loss", "parts"]
    expected: list[tuple[Any, ...]] = [("fit_start", 0, 0)]
    for epoch in range(2):
        expected.append(("epoch_start", epoch))
        for b in range(2):
            step = 2 * epoch + b
            expected += [("batch_start", b, step), ("batch_end", b, step + 1, outputs)]
        expected += [("validation_end", ["accuracy", "loss"]), ("epoch_end", epoch, logs)]
    expected.append(("fit_end", 2, 4))
    assert recorder.calls == expected


class Scores(Callback):
    """Writes a fixed score per epoch into the logs and keeps each epoch's weights."""

    def __init__(self, scores: list[float]) -> None:
        self.scores = scores
        self.weights: list[dict[str, Tensor]] = []

    def log_keys(self, trainer: Any) -> Sequence[str]:
        return ("score",)  # declared, so EarlyStopping may monitor it without a warning

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        logs["score"] = self.scores[epoch]
        self.weights.append({k: v.clone() for k, v in trainer.model.state_dict().items()})


def test_early_stopping_stops_at_the_right_epoch_and_restores_the_best_weights() -> None:
    x, y = _class_data(n=20)
    scores = Scores([5.0, 3.0, 1.0, 2.0, 4.0, 0.5, 0.1, 0.1])
    stopper = EarlyStopping(monitor="score", patience=2)
    model = _classifier()
    trainer = _quiet(max_epochs=8, batch_size=10, callbacks=[scores, stopper])
    history = trainer.fit(model, (x, y))
    assert len(history) == 5  # best at epoch 2; epochs 3 and 4 do not improve
    assert history["score"] == [5.0, 3.0, 1.0, 2.0, 4.0]  # entries callbacks add are recorded
    best = scores.weights[2]
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())


def test_a_callback_can_stop_training_after_the_current_epoch() -> None:
    class StopAtOne(Callback):
        def on_batch_end(self, trainer: Any, batch_idx: int, outputs: dict[str, Any]) -> None:
            trainer.should_stop = trainer.epoch == 1

    x, y = _class_data(n=20)
    trainer = _quiet(max_epochs=5, batch_size=10, callbacks=[StopAtOne()])
    assert len(trainer.fit(_classifier(), (x, y))) == 2
    assert trainer.global_step == 4


# -- reproducibility --------------------------------------------------------------------------


def test_the_same_seed_gives_identical_weights() -> None:
    x, y = _class_data(n=40)
    runs = []
    for seed in (3, 3, 4):
        model = _classifier(num_layers=2, dropout=0.5)  # dropout draws from the global RNG
        _quiet(max_epochs=2, batch_size=8, seed=seed).fit(model, (x, y))
        runs.append(model)
    assert _weights_equal(runs[0], runs[1])
    assert not _weights_equal(runs[0], runs[2])


# -- sequence-to-sequence modes ---------------------------------------------------------------


def _fit_regressor(**options: Any) -> tuple[Seq2SeqRegressor, list[float]]:
    x, y = _wave_data()
    model = _regressor()
    trainer = _quiet(max_epochs=2, batch_size=12, lr=1e-2, seed=0, shuffle=False, **options)
    return model, trainer.fit(model, (x, y))["loss"]


def test_tbptt_with_k_equal_to_l_equals_full_bptt() -> None:
    full, full_losses = _fit_regressor()
    windowed, windowed_losses = _fit_regressor(tbptt_steps=16)
    assert _weights_equal(full, windowed)
    assert full_losses == windowed_losses


def test_tbptt_equals_a_hand_written_truncated_loop() -> None:
    trained, _ = _fit_regressor(tbptt_steps=5)
    x, y = _wave_data()
    model = _regressor()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)  # as 'adam'
    for _ in range(2):  # one batch per epoch: the order does not matter
        state = None
        for start in range(0, 16, 5):
            out, state = model(x[:, start : start + 5], state)
            torch.autograd.backward(F.mse_loss(out, y[:, start : start + 5]))
            optimizer.step()
            optimizer.zero_grad()
            state = state.detach()
    assert _weights_equal(trained, model)


def _teacher_forced_by_hand(closed_loop_ratio: float | None) -> Seq2SeqRegressor:
    x, y = _wave_data()
    model = _regressor()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)  # as 'adam'
    for _ in range(2):
        if closed_loop_ratio is None:
            out, _ = model(x)
        else:
            out, _ = model.rollout(x, closed_loop_ratio)
        torch.autograd.backward(F.mse_loss(out, y))
        optimizer.step()
        optimizer.zero_grad()
    return model


def test_closed_loop_with_ratio_one_equals_teacher_forcing() -> None:
    closed_loop, _ = _fit_regressor(teacher_forcing=lambda epoch: 1.0)
    assert _weights_equal(closed_loop, _teacher_forced_by_hand(None))


def test_closed_loop_with_ratio_zero_runs_free() -> None:
    free, _ = _fit_regressor(teacher_forcing=0.0)
    assert _weights_equal(free, _teacher_forced_by_hand(0.0))
    assert not _weights_equal(free, _teacher_forced_by_hand(None))


def test_scheduled_sampling_is_reproducible_and_recorded() -> None:
    schedule = lambda epoch: 1.0 - 0.25 * epoch  # noqa: E731
    first, _ = _fit_regressor(teacher_forcing=schedule)
    second, _ = _fit_regressor(teacher_forcing=schedule)
    assert _weights_equal(first, second)
    x, y = _wave_data()
    history = _quiet(max_epochs=2, batch_size=12, teacher_forcing=schedule).fit(
        _regressor(), (x, y)
    )
    assert history["teacher_forcing"] == [1.0, 0.75]


def test_rollout_horizon_scores_free_running_generation_in_validation() -> None:
    x, y = _wave_data()
    model = _regressor()
    trainer = _quiet(max_epochs=1, batch_size=12, rollout_horizon=4)
    history = trainer.fit(model, (x, y), val=(x, y))
    with torch.no_grad():
        generated, _ = model.generate(x[:, :13], 4)
    expected = float(F.mse_loss(generated, y[:, 12:16]))
    assert history[0]["val_rollout_mse"] == pytest.approx(expected, rel=1e-5)


# -- smoke-test modes and logging -------------------------------------------------------------


class BatchSpy(Trainer):
    """A Trainer subclass recording the first input value of every training batch."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(progress=False, **kwargs)
        self.seen: list[float] = []

    def training_step(self, batch: Any, batch_idx: int) -> StepOutput:
        self.seen.append(float(batch.x[0, 0, 0]))
        return super().training_step(batch, batch_idx)


def test_fast_dev_run_runs_one_batch_of_training_and_validation() -> None:
    x, y = _class_data(n=40)
    recorder = Recorder()
    trainer = Trainer(
        max_epochs=5, batch_size=8, fast_dev_run=True, callbacks=[recorder], progress=False
    )
    history = trainer.fit(_classifier(), (x, y), val=(x, y))
    assert len(history) == 1
    assert trainer.global_step == 1
    assert [c[0] for c in recorder.calls].count("batch_end") == 1


def test_overfit_batches_trains_on_the_same_first_batches_every_epoch() -> None:
    x, y = _class_data(n=40)
    spy = BatchSpy(max_epochs=3, batch_size=8, overfit_batches=2, seed=0)
    spy.fit(_classifier(), (x, y))
    assert spy.seen == [float(x[0, 0, 0]), float(x[8, 0, 0])] * 3


def test_logged_loss_is_the_mean_over_the_interval() -> None:
    losses: list[float] = []

    class Losses(Callback):
        def on_batch_end(self, trainer: Any, batch_idx: int, outputs: dict[str, Any]) -> None:
            losses.append(float(outputs["loss"]))

    x, y = _class_data(n=64)
    trainer = _quiet(max_epochs=1, batch_size=8, log_every_n_steps=4, callbacks=[Losses()])
    trainer.fit(_classifier(), (x, y))
    assert len(losses) == 8
    assert trainer.logged_metrics["loss"] == pytest.approx(sum(losses[4:]) / 4, rel=1e-6)
    assert trainer.logged_metrics["step"] == 8


def test_skip_nan_batches_counts_and_reports_them() -> None:
    calls = {"n": 0}

    def flaky_loss(output: Tensor, target: Tensor) -> Tensor:
        calls["n"] += 1
        loss = F.cross_entropy(output, target)
        return loss * math.nan if calls["n"] in (2, 5) else loss

    x, y = _class_data(n=32)
    model = _classifier()
    trainer = _quiet(max_epochs=2, batch_size=8, loss=flaky_loss, on_nan="skip")
    history = trainer.fit(model, (x, y))
    assert trainer.skipped_batches == 2
    assert history["skipped_batches"] == [1, 2]  # cumulative: one in each epoch
    assert trainer.global_step == 6
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert math.isfinite(history[0]["loss"])


# -- evaluate and predict inside a fit ---------------------------------------------------------


class EvaluateEveryEpoch(Callback):
    """Calls predict and evaluate, on another model and on the fit's, after every epoch."""

    def __init__(self, data: tuple[Tensor, Tensor]) -> None:
        self.data = data
        self.scores: list[dict[str, float]] = []
        self.other = Seq2SeqRegressor(3, output_size=1, hidden_size=4)  # another task

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        trainer.predict(self.other, self.data[0])
        trainer.predict(trainer.model, self.data[0])
        self.scores.append(trainer.evaluate(trainer.model, self.data))


def test_evaluate_and_predict_in_a_callback_leave_the_fit_unchanged() -> None:
    def smoothed(output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(output, target, label_smoothing=0.2)

    x, y = _class_data(n=48)
    runs = []
    probe = EvaluateEveryEpoch((x[:16], y[:16]))
    for callbacks in ([], [probe]):
        model = _classifier(num_layers=2, dropout=0.3)  # dropout: the global RNG must not move
        trainer = _quiet(
            max_epochs=3,
            batch_size=8,
            seed=0,
            loss=smoothed,
            metrics=["accuracy", "top1_accuracy"],
            callbacks=callbacks,
        )
        history = trainer.fit(model, (x, y), val=(x[16:], y[16:]))
        runs.append((history, model, trainer))
    (plain, plain_model, _), (probed, probed_model, probed_trainer) = runs
    assert len(plain) == len(probed) == 3
    for expected, got in zip(plain, probed, strict=True):
        assert got.keys() == expected.keys()
        assert {k: v for k, v in got.items() if k != "time"} == {
            k: v for k, v in expected.items() if k != "time"
        }  # "time" is the wall-clock time of the epoch
    assert _weights_equal(plain_model, probed_model)
    assert probed_trainer.model is probed_model
    callback = probed_trainer.callbacks[0]
    assert isinstance(callback, EvaluateEveryEpoch)
    assert set(callback.scores[0]) == {"loss", "accuracy", "top1_accuracy"}


def test_predict_on_padded_data_keeps_the_datas_length() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(3, 10, 1), torch.randn(3, 10, 1)
    lengths = torch.tensor([4, 7, 5])  # no sequence fills L = 10
    model = Seq2SeqRegressor(1, 1, 8)
    predicted = _quiet(batch_size=2).predict(model, (x, y, lengths))
    assert predicted.shape == (3, 10, 1)  # as y, so predicted - y works
    with torch.no_grad():
        expected = model.eval()(x, lengths=lengths)[0]
    torch.testing.assert_close(predicted, expected)
    assert bool((predicted[0, 4:] == 0).all())


def test_an_epoch_with_every_update_skipped_records_nan_and_can_be_monitored() -> None:
    x, y = torch.randn(8, 5, 3), torch.randint(0, 2, (8,))

    def nan_loss(out: Tensor, target: Tensor) -> Tensor:
        return out.sum() * math.nan

    trainer = _quiet(max_epochs=3, batch_size=4, on_nan="skip", loss=nan_loss)
    history = trainer.fit(SequenceClassifier(3, 2, 8), (x, y))
    assert all(math.isnan(record["loss"]) for record in history)
    assert all(math.isnan(record["accuracy"]) for record in history)
    assert [record["skipped_batches"] for record in history] == [2, 4, 6]  # the run's total
    stopper = EarlyStopping(monitor="loss", patience=1)  # finds the key, sees no improvement
    stopped = _quiet(max_epochs=5, on_nan="skip", loss=nan_loss, callbacks=[stopper])
    assert len(stopped.fit(SequenceClassifier(3, 2, 8), (x, y))) < 5


def test_predict_of_a_custom_task_whose_outputs_are_not_per_step_is_not_padded() -> None:
    from rnnkit.data import Batch
    from rnnkit.tasks import RegressionTask

    class LastTwo(RegressionTask):
        def predict(self, model: torch.nn.Module, batch: Batch) -> Tensor:
            return super().predict(model, batch)[:, -2:]

    x, lengths = torch.randn(6, 5, 1), torch.tensor([5, 3, 4, 5, 2, 5])
    trainer = _quiet(batch_size=2, task=LastTwo())
    assert trainer.predict(Seq2SeqRegressor(1, 1, 4), (x, torch.zeros(6, 5, 1), lengths)).shape == (
        6,
        2,
        1,
    )
