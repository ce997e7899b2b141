"""Trainer(stateful=True): the state carried across stream batches, reset, saved, resumed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from rnnkit import Callback, Seq2SeqRegressor, SequenceClassifier, Trainer
from rnnkit.data import StreamBatches, streams
from rnnkit.errors import CheckpointError
from rnnkit.shapes import State


def _two_series() -> StreamBatches:
    """Two series of different lengths in 3 streams: a reset in the middle of one stream."""
    g = torch.Generator().manual_seed(0)
    batches = streams([torch.randn(61, 1, generator=g), torch.randn(37, 1, generator=g)], 3, 4)
    assert bool(batches.resets[1:].any())  # a series starts mid-stream
    assert not bool(batches.resets[1:].all())
    return batches


def _model(cell: str = "lstm") -> Seq2SeqRegressor:
    torch.manual_seed(3)
    return Seq2SeqRegressor(1, 1, 6, cell=cell)  # type: ignore[arg-type]


def _trainer(**kwargs: Any) -> Trainer:
    options: dict[str, Any] = {
        "max_epochs": 2,
        "optimizer": "sgd",
        "lr": 0.05,
        "progress": False,
        "seed": 0,
        "stateful": True,
    }
    options.update(kwargs)
    return Trainer(**options)


def _zero_rows(state: State | None, reset: Tensor) -> State | None:
    if state is None or bool(reset.all()):
        return None

    def zero(t: Tensor) -> Tensor:
        return t.masked_fill(reset.view(1, -1, 1), 0.0)

    return (zero(state[0]), zero(state[1])) if isinstance(state, tuple) else zero(state)


def _hand_loop(model: Seq2SeqRegressor, batches: StreamBatches, epochs: int, reset: bool) -> None:
    """The reference: plain SGD, the detached state carried, rows zeroed at resets."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(epochs):
        state: State | None = None
        for batch, flags in batches.with_resets():
            h0 = _zero_rows(state, flags) if reset else state
            output, state = model(batch.x, h0)
            assert batch.y is not None
            loss = torch.nn.functional.mse_loss(output, batch.y)
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            optimizer.step()
            assert isinstance(state, tuple)
            state = (state[0].detach(), state[1].detach())


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_state_is_carried_and_reset_exactly_at_stream_starts() -> None:
    batches = _two_series()
    model = _model()
    reference, no_reset = copy.deepcopy(model), copy.deepcopy(model)
    _trainer().fit(model, batches)
    _hand_loop(reference, batches, epochs=2, reset=True)
    _hand_loop(no_reset, batches, epochs=2, reset=False)
    assert _same_weights(model, reference)
    assert not _same_weights(model, no_reset)  # the mid-stream reset matters


def test_without_state_the_trainer_starts_every_batch_from_zeros() -> None:
    batches = _two_series()
    stateful, stateless = _model("gru"), _model("gru")
    _trainer(max_epochs=1).fit(stateful, batches)
    _trainer(max_epochs=1, stateful=False).fit(stateless, batches)
    assert not _same_weights(stateful, stateless)


class InterruptAt(Callback):
    """Raises KeyboardInterrupt (as Ctrl-C would) after the given global step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, trainer: Any, batch_idx: int, outputs: dict[str, Any]) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path: Path) -> None:
    batches = _two_series()
    assert len(batches) > 4
    whole, part = _model(), _model()
    _trainer(max_epochs=2, optimizer="adam").fit(whole, batches, batches)
    steps = len(batches) + 3  # mid-way through the second epoch: the carry matters
    interrupted = _trainer(
        max_epochs=2, optimizer="adam", callbacks=[InterruptAt(steps)], default_root_dir=tmp_path
    )
    interrupted.fit(part, batches, batches)
    assert interrupted.interrupted
    path = interrupted.interrupt_checkpoint
    assert path is not None
    assert torch.load(path, weights_only=True)["trainer"]["stream_state"]["state"] is not None
    resumed = _model()
    history = _trainer(max_epochs=2, optimizer="adam").fit(resumed, batches, batches, path)
    assert _same_weights(whole, resumed)
    assert len(history) == 2


def test_resuming_mid_epoch_without_the_carried_state_is_refused(tmp_path: Path) -> None:
    batches = _two_series()
    trainer = _trainer(stateful=False, callbacks=[InterruptAt(3)], default_root_dir=tmp_path)
    trainer.fit(_model(), batches)
    model = _model()
    before = copy.deepcopy(model)
    with pytest.raises(CheckpointError, match="stream_state"):
        _trainer().fit(model, batches, resume_from=trainer.interrupt_checkpoint)
    assert _same_weights(model, before)


def test_resuming_a_stateful_run_mid_epoch_without_stateful_is_refused(tmp_path: Path) -> None:
    batches = _two_series()
    trainer = _trainer(callbacks=[InterruptAt(3)], default_root_dir=tmp_path)
    trainer.fit(_model(), batches)
    model = _model()
    before = copy.deepcopy(model)
    with pytest.raises(CheckpointError, match=r"^Expected stateful=True to resume this checkpoint"):
        _trainer(stateful=False).fit(model, batches, resume_from=trainer.interrupt_checkpoint)
    assert _same_weights(model, before)


def test_predict_and_evaluate_on_streams_carry_the_state() -> None:
    batches = _two_series()
    model = _model().eval()
    trainer = _trainer()
    predicted = trainer.predict(model, batches)
    assert predicted.shape == batches.y.shape
    state: State | None = None
    expected = []
    with torch.no_grad():
        for batch, flags in batches.with_resets():
            output, state = model(batch.x, _zero_rows(state, flags))
            expected.append(output)
    reference = torch.cat(expected, dim=1)
    assert torch.equal(predicted, reference)
    loss = trainer.evaluate(model, batches)["loss"]
    assert loss == pytest.approx(float(torch.nn.functional.mse_loss(reference, batches.y)))


def _delay_streams(window: int, num_streams: int, num_batches: int) -> StreamBatches:
    """Noise streams whose target at step t is the input at t - 3·window (zero before)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(num_streams, num_batches * window, 1, generator=g)
    delay = 3 * window
    y = torch.zeros_like(x)
    y[:, delay:] = x[:, :-delay]
    resets = torch.zeros(num_batches, num_streams, dtype=torch.bool)
    resets[0] = True
    return StreamBatches(x, y, resets, window)


def _shift_register(window: int) -> Seq2SeqRegressor:
    """A relu RNN wired (with noise) as a delay line of 3·window steps.

    Within a window no gradient reaches an input 3 windows back, so truncated BPTT cannot
    learn the delay line itself; the readout (zero at first) can be learned only when the
    carried state brings that input into the window: without state no readout beats
    predicting the mean.
    """
    delay = 3 * window
    torch.manual_seed(0)
    model = Seq2SeqRegressor(1, 1, 2 * delay + 2, nonlinearity="relu")
    rnn = dict(model.encoder.rnn.named_parameters())
    with torch.no_grad():
        shift = torch.zeros(2 * delay + 2, 2 * delay + 2)
        for i in range(2, 2 * delay + 2):
            shift[i, i - 2] = 1.0  # two lanes: the positive and the negative part of x
        rnn["weight_hh_l0"].copy_(shift + 0.01 * torch.randn_like(shift))
        rnn["weight_ih_l0"].zero_()
        rnn["weight_ih_l0"][0, 0], rnn["weight_ih_l0"][1, 0] = 1.0, -1.0
        rnn["bias_ih_l0"].zero_()
        rnn["bias_hh_l0"].zero_()
        model.head.weight.zero_()
        model.head.bias.zero_()
    return model


def test_a_delay_across_windows_is_learned_only_with_state() -> None:
    window = 4
    train = _delay_streams(window, num_streams=16, num_batches=24)
    scores = {}
    for stateful in (True, False):
        trainer = _trainer(max_epochs=3, optimizer="sgd", lr=0.05, stateful=stateful)
        model = _shift_register(window)
        trainer.fit(model, train)
        scores[stateful] = trainer.evaluate(model, train)["loss"]
    variance = float(train.y.var())
    assert scores[True] < 0.2 * variance, scores
    assert scores[False] > 0.8 * variance, scores


def test_stateful_refuses_data_that_are_not_streams() -> None:
    x, y = torch.randn(16, 4, 1), torch.randn(16, 4, 1)
    with pytest.raises(ValueError, match="stream source"):
        _trainer().fit(_model(), (x, y))
    with pytest.raises(ValueError, match="stream source"):
        _trainer().fit(_model(), _two_series(), [(x, y)])


def test_stateful_refuses_a_model_without_an_initial_state() -> None:
    batches = _two_series()
    with pytest.raises(ValueError, match="initial state"):
        _trainer().fit(SequenceClassifier(1, 2, 4), batches)


def test_stateful_refuses_a_bidirectional_model() -> None:
    model = Seq2SeqRegressor(1, 1, 4, bidirectional=True)
    with pytest.raises(ValueError, match=r"^Expected a unidirectional model with stateful=True"):
        _trainer().fit(model, _two_series())


def test_predict_and_evaluate_on_streams_refuse_a_bidirectional_model() -> None:
    model = Seq2SeqRegressor(1, 1, 4, bidirectional=True)
    for run in (_trainer().predict, _trainer().evaluate):
        with pytest.raises(ValueError, match=r"^Expected a unidirectional model with stateful"):
            run(model, _two_series())
