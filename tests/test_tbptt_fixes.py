"""TBPTT windows of a regressor against one pass: padded steps, and the closed loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.callbacks.model_checkpoint import ModelCheckpoint
from rnnkit.data import Batch
from rnnkit.models import Seq2SeqRegressor
from rnnkit.shapes import CellType, State
from rnnkit.tasks import RegressionTask, detach_state
from rnnkit.training.trainer import Trainer


def _padded() -> tuple[Tensor, Tensor, Tensor]:
    """Four sequences of 7 steps; the windows of 3 leave rows 1 and 3 without valid steps."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 7, 1, generator=gen), torch.randn(4, 7, 1, generator=gen)
    return x, y, torch.tensor([7, 2, 4, 1])


def _model(cell: CellType = "rnn", batch_first: bool = True) -> Seq2SeqRegressor:
    torch.manual_seed(1)
    return Seq2SeqRegressor(1, 1, 4, cell=cell, batch_first=batch_first)


def _valid(lengths: Tensor, steps: int) -> Tensor:
    """``True`` at the valid steps, ``(N, L, 1)``."""
    return (torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)


def _windows(
    model: Seq2SeqRegressor,
    batch: Batch,
    ratio: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, State | None]:
    """The task's windows of 3 steps, run as the Trainer runs them (state detached between)."""
    task = RegressionTask(tbptt_steps=3)
    state: State | None = None
    outputs = []
    for chunk in task.chunks(batch):
        output, state = task.forward(model, chunk, state, ratio, generator)
        outputs.append(output)
        state = detach_state(state)
    return torch.cat(outputs, dim=1), state


def _closed_loop_by_hand(model: Seq2SeqRegressor, x: Tensor, teacher: Tensor) -> Tensor:
    """One step at a time: ``x[:, t]`` at t = 0 and where ``teacher[:, t]``, else y[:, t-1]."""
    state: State | None = None
    previous = x[:, 0]
    outputs = []
    for t in range(x.shape[1]):
        fed = x[:, t] if t == 0 else torch.where(teacher[:, t : t + 1], x[:, t], previous)
        previous, state = model.step(fed, state)
        outputs.append(previous)
    return torch.stack(outputs, dim=1)


# -- padded steps ----------------------------------------------------------------------------


def test_predict_in_windows_is_zero_after_a_short_sequence_ends() -> None:
    torch.manual_seed(0)
    model = Seq2SeqRegressor(1, 1, 4)
    x, y, lengths = torch.randn(2, 6, 1), torch.zeros(2, 6, 1), torch.tensor([6, 2])
    predicted = Trainer(1, 8, progress=False, tbptt_steps=3).predict(model, (x, y, lengths))
    assert torch.equal(predicted[1, 2:], torch.zeros(4, 1))
    assert bool((predicted[0] != 0).all())


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
@pytest.mark.parametrize("tbptt_steps", [2, 3])
def test_predict_in_windows_equals_one_pass_on_padded_data(
    cell: CellType, tbptt_steps: int
) -> None:
    x, y, lengths = _padded()
    model = _model(cell)
    windowed = Trainer(batch_size=4, tbptt_steps=tbptt_steps, progress=False)
    predicted = windowed.predict(model, (x, y, lengths))
    whole = Trainer(batch_size=4, progress=False).predict(model, (x, y, lengths))
    with torch.no_grad():
        expected, _ = model.eval()(x, None, lengths)
    torch.testing.assert_close(predicted, whole)
    torch.testing.assert_close(predicted, expected)
    assert torch.equal(predicted[~_valid(lengths, 7).expand_as(predicted)], torch.zeros(14))


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_windows_end_in_each_sequences_state_at_its_last_valid_step(cell: CellType) -> None:
    x, y, lengths = _padded()
    model = _model(cell)
    with torch.no_grad():
        _, state = _windows(model, Batch(x, y, lengths))
        _, expected = model(x, None, lengths)
    if isinstance(expected, tuple):
        assert isinstance(state, tuple)
        torch.testing.assert_close(state[0], expected[0])
        torch.testing.assert_close(state[1], expected[1])
    else:
        assert isinstance(state, Tensor)
        torch.testing.assert_close(state, expected)


def _mean_by_hand(model: Seq2SeqRegressor, x: Tensor, y: Tensor, lengths: Tensor) -> Any:
    """MSE and MAE over the valid elements only, from one pass of the model."""
    with torch.no_grad():
        output, _ = model.eval()(x, None, lengths)
    valid = _valid(lengths, x.shape[1]).expand_as(y)
    error = (output - y)[valid]
    return error.square().mean().item(), error.abs().mean().item()


def test_evaluate_in_windows_counts_only_the_valid_steps() -> None:
    x, y, lengths = _padded()
    model = _model()
    windowed = Trainer(batch_size=4, tbptt_steps=3, progress=False).evaluate(model, (x, y, lengths))
    mse, mae = _mean_by_hand(model, x, y, lengths)
    assert windowed["loss"] == pytest.approx(mse, rel=1e-5)
    assert windowed["mae"] == pytest.approx(mae, rel=1e-5)


def test_validation_in_windows_counts_only_the_valid_steps() -> None:
    x, y, lengths = _padded()
    model = _model()
    trainer = Trainer(1, 4, lr=1e-2, seed=0, tbptt_steps=3, progress=False)
    history = trainer.fit(model, (x, y, lengths), val=(x, y, lengths))
    mse, mae = _mean_by_hand(model, x, y, lengths)  # the model as validation saw it
    assert history["val_loss"][0] == pytest.approx(mse, rel=1e-5)
    assert history["val_mae"][0] == pytest.approx(mae, rel=1e-5)


# -- the closed loop across windows ----------------------------------------------------------


@pytest.mark.parametrize("batch_first", [True, False])
def test_free_running_windows_equal_one_free_running_pass(batch_first: bool) -> None:
    x = torch.randn(3, 8, 1, generator=torch.Generator().manual_seed(2))
    model = _model("gru", batch_first)
    output, _ = _windows(model, Batch(x, None, None), ratio=0.0)
    expected = _closed_loop_by_hand(model, x, torch.zeros(3, 8, dtype=torch.bool))
    torch.testing.assert_close(output, expected)
    generated, _ = model.generate(x[:1, :1] if batch_first else x[:1, :1].transpose(0, 1), 8)
    generated = generated if batch_first else generated.transpose(0, 1)
    torch.testing.assert_close(output[:1], generated)


@pytest.mark.parametrize("own_generator", [True, False])
def test_scheduled_sampling_windows_draw_a_coin_for_each_first_step(own_generator: bool) -> None:
    x = torch.randn(5, 8, 1, generator=torch.Generator().manual_seed(2))
    model = _model()
    torch.manual_seed(7)  # the coins' generator when none is given
    generator = torch.Generator().manual_seed(7) if own_generator else None
    output, _ = _windows(model, Batch(x, None, None), ratio=0.5, generator=generator)
    after = torch.get_rng_state() if generator is None else generator.get_state()
    reference = torch.Generator().manual_seed(7)  # one (N, l) draw per window, as rollout's
    teacher = torch.cat([torch.rand(5, w, generator=reference) < 0.5 for w in (3, 3, 2)], dim=1)
    firsts = teacher[:, [3, 6]]
    assert bool(firsts.any())  # both kinds of first step occur
    assert not bool(firsts.all())
    torch.testing.assert_close(output, _closed_loop_by_hand(model, x, teacher))
    assert torch.equal(after, reference.get_state())  # no coin drawn more than before


def test_teacher_forced_windows_are_unchanged_and_draw_no_coin() -> None:
    x = torch.randn(3, 8, 1, generator=torch.Generator().manual_seed(2))
    model = _model("lstm")
    generator = torch.Generator().manual_seed(7)
    before = generator.get_state()
    output, _ = _windows(model, Batch(x, None, None), ratio=1.0, generator=generator)
    expected, _ = model(x)
    torch.testing.assert_close(output, expected)
    assert torch.equal(generator.get_state(), before)


def _waves() -> tuple[Tensor, Tensor]:
    phase = torch.linspace(0, 3, 6).unsqueeze(1)
    waves = torch.sin(torch.linspace(0, 6, 11) + phase).unsqueeze(-1)
    return waves[:, :-1], waves[:, 1:]


def test_free_running_tbptt_training_equals_a_hand_written_loop() -> None:
    x, y = _waves()
    trained = _model()
    trainer = Trainer(
        2, 6, lr=1e-2, seed=0, shuffle=False, tbptt_steps=3, teacher_forcing=0.0, progress=False
    )
    trainer.fit(trained, (x, y))
    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)  # as 'adam'
    for _ in range(2):  # one batch per epoch
        state: State | None = None
        previous: Tensor | None = None
        for start in range(0, 10, 3):
            fed = x[:, start] if previous is None else previous
            outputs = []
            for _ in range(x[:, start : start + 3].shape[1]):
                fed, state = model.step(fed, state)
                outputs.append(fed)
            out = torch.stack(outputs, dim=1)
            torch.autograd.backward(F.mse_loss(out, y[:, start : start + 3]))
            optimizer.step()
            optimizer.zero_grad()
            previous, state = out[:, -1].detach(), detach_state(state)
    for a, b in zip(trained.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_scheduled_sampling_in_windows_resumes_exactly(tmp_path: Path) -> None:
    x, y = _waves()

    def fit(folder: Path, epochs: int, **kwargs: Any) -> torch.nn.Module:
        torch.manual_seed(2 if kwargs else 1)  # a resumed run gets its weights from the file
        model = Seq2SeqRegressor(1, hidden_size=8, cell="lstm", num_layers=2, dropout=0.2)
        trainer = Trainer(
            epochs,
            2,  # 3 batches per epoch
            seed=5,
            tbptt_steps=3,
            teacher_forcing=0.5,
            callbacks=[ModelCheckpoint(folder)],
            progress=False,
        )
        trainer.fit(model, (x, y), **kwargs)
        assert trainer.model is not None
        return trainer.model

    straight = fit(tmp_path / "straight", 3)
    fit(tmp_path / "resumed", 1)
    resumed = fit(tmp_path / "resumed", 3, resume_from="last")
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
