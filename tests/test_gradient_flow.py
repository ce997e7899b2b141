"""GradientFlow: ||dL/dh_t|| per time step, saturation, the vanishing/exploding warning.

The references: the diagnostic pass's output equals the model's own (fused) forward, and the
gradient with respect to the state after step t-1 equals the gradient with respect to ``h0``
of torch's layer run on the steps from t onwards with that state (the rest of the loss does
not depend on it).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.callbacks import FlowRecord, GradientFlow, measure_gradient_flow
from rnnkit.callbacks._unroll import Unroll, stepwise
from rnnkit.models import Seq2SeqRegressor, SequenceClassifier
from rnnkit.training import Trainer

LONG = 200


def _long_batch(n: int = 8, steps: int = LONG) -> tuple[Tensor, Tensor]:
    """A long dependency: the class is the sign of the first step's first feature."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, steps, 3, generator=gen)
    return x, (x[:, 0, 0] > 0).long()


def _open_lstm(hidden: int) -> SequenceClassifier:
    """An LSTM whose forget gates are open (bias 8: sigmoid = 0.9997), as training on a long
    dependency leaves them; at torch's default init (forget gate 0.5) it forgets too."""
    torch.manual_seed(0)
    model = SequenceClassifier(3, 2, hidden, cell="lstm")
    with torch.no_grad():
        bias = model.encoder.rnn.get_parameter("bias_ih_l0")
        bias[hidden : 2 * hidden] = 8.0
    return model


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_the_step_by_step_pass_equals_the_fused_layer(cell: str, layers: int) -> None:
    torch.manual_seed(0)
    model = Seq2SeqRegressor(3, 2, 6, cell=cell, num_layers=layers)  # type: ignore[arg-type]
    x = torch.randn(4, 9, 3)
    lengths = torch.tensor([9, 5, 9, 1])
    expected, expected_state = model(x, lengths=lengths)
    with stepwise(model.encoder, Unroll(model.encoder)):
        output, state = model(x, lengths=lengths)
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)
    if cell == "lstm":
        torch.testing.assert_close(state[0], expected_state[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(state[1], expected_state[1], atol=1e-5, rtol=1e-5)
    else:
        torch.testing.assert_close(state, expected_state, atol=1e-5, rtol=1e-5)
    assert not hasattr(model.encoder, "__dict__") or "run" not in vars(model.encoder)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_norms_equal_the_gradient_into_a_restarted_suffix(cell: str) -> None:
    torch.manual_seed(0)
    model = SequenceClassifier(3, 2, 5, cell=cell)  # type: ignore[arg-type]
    x, y = _long_batch(n=4, steps=12)
    norms, _ = measure_gradient_flow(model, x, y)
    encoder = model.encoder.rnn
    for t in (1, 6, 11):  # the state after step t-1 restarts the steps t..L-1
        with torch.no_grad():
            _, prefix_state = encoder(x[:, :t])
        h = (prefix_state[0] if cell == "lstm" else prefix_state).clone().requires_grad_()
        h0 = (h, prefix_state[1]) if cell == "lstm" else h
        _, final = encoder(x[:, t:], h0)
        last = final[0] if cell == "lstm" else final
        loss = F.cross_entropy(model.head(last[-1]), y)
        (grad,) = torch.autograd.grad(loss, h)
        assert norms[t - 1] == pytest.approx(float(grad.norm()), rel=1e-4)


def test_a_tanh_rnn_over_200_steps_vanishes_and_an_open_lstm_does_not() -> None:
    x, y = _long_batch()
    torch.manual_seed(0)
    rnn = SequenceClassifier(3, 2, 16, cell="rnn")
    norms, saturation = measure_gradient_flow(rnn, x, y)
    record = FlowRecord(0, 0, norms, saturation)
    assert len(norms) == LONG
    assert record.verdict == "vanishing"
    assert record.ratio < 1e-3
    assert set(saturation) == {"tanh"}
    lstm_norms, gates = measure_gradient_flow(_open_lstm(16), x, y)
    lstm = FlowRecord(0, 0, lstm_norms, gates)
    assert lstm.verdict == "ok"
    assert set(gates) == {"input", "forget", "output"}
    assert gates["forget"] > 0.5  # the open forget gates are near 1
    assert gates["input"] < 0.1


def test_the_callback_warns_once_with_the_remedies_and_logs_the_ratio() -> None:
    x, y = _long_batch(n=16)
    flow = GradientFlow(x[:4], y[:4])
    torch.manual_seed(0)
    trainer = Trainer(max_epochs=2, batch_size=8, progress=False, seed=0, callbacks=[flow])
    with pytest.warns(UserWarning, match="vanishing") as caught:
        history = trainer.fit(SequenceClassifier(3, 2, 16), (x, y))
    messages = [str(w.message) for w in caught if "GradientFlow" in str(w.message)]
    assert len(messages) == 1  # once per fit, although both epochs vanish
    assert "\n" not in messages[0]
    for remedy in ("cell='lstm'", "init='orthogonal'", "tbptt_steps"):
        assert remedy in messages[0]
    assert [r.epoch for r in flow.records] == [0, 1]
    assert history["grad_flow_ratio"] == [r.ratio for r in flow.records]


def test_the_callback_stays_quiet_for_an_open_lstm() -> None:
    x, y = _long_batch(n=8)
    flow = GradientFlow(x[:4], y[:4], every_n_steps=1)
    trainer = Trainer(max_epochs=1, batch_size=8, progress=False, seed=0, callbacks=[flow])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.fit(_open_lstm(16), (x, y))
    assert [r.step for r in flow.records] == [1, 1]  # after the step, and at the epoch's end
    assert all(r.verdict == "ok" for r in flow.records)


def test_exploding_is_reported() -> None:
    torch.manual_seed(0)
    model = SequenceClassifier(3, 2, 8, cell="rnn", nonlinearity="relu")
    with torch.no_grad():
        weight = model.encoder.rnn.get_parameter("weight_hh_l0")
        weight.copy_(1.5 * torch.eye(8))
    x, y = _long_batch(n=4, steps=40)
    record = FlowRecord(0, 0, *measure_gradient_flow(model, x.abs(), y))
    assert record.verdict == "exploding"
    from rnnkit.callbacks.gradient_flow import _flow_warning

    assert "grad_clip_norm" in _flow_warning(record)


def test_measuring_changes_neither_training_nor_gradients() -> None:
    x, y = _long_batch(n=16, steps=20)

    def fit(callbacks: list[Any]) -> list[float]:
        torch.manual_seed(0)
        model = SequenceClassifier(3, 2, 8, cell="gru", num_layers=2, dropout=0.3)
        trainer = Trainer(max_epochs=2, batch_size=8, progress=False, seed=0, callbacks=callbacks)
        return trainer.fit(model, (x, y))["loss"]

    assert fit([GradientFlow(x[:4], y[:4], every_n_steps=1)]) == fit([])


def test_padded_steps_get_no_gradient() -> None:
    torch.manual_seed(0)
    model = SequenceClassifier(3, 2, 6, cell="gru")
    x, y = _long_batch(n=2, steps=10)
    norms, saturation = measure_gradient_flow(model, x, y, torch.tensor([6, 6]))
    assert norms[6:] == [0.0] * 4
    assert min(norms[:6]) > 0
    assert 0.0 <= saturation["update"] <= 1.0


def test_plot_and_state(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    x, y = _long_batch(n=4, steps=30)
    flow = GradientFlow(x, y)
    trainer = Trainer(max_epochs=2, batch_size=4, progress=False, seed=0, callbacks=[flow])
    with pytest.warns(UserWarning, match="vanishing"):
        trainer.fit(SequenceClassifier(3, 2, 4), (x, y))
    path = flow.plot(tmp_path / "flow.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = GradientFlow(x, y)
    again.load_state_dict(flow.state_dict())
    assert again.records == flow.records


def test_bad_models_and_arguments() -> None:
    x, y = _long_batch(n=2, steps=5)
    with pytest.raises(ValueError, match="unidirectional"):
        measure_gradient_flow(SequenceClassifier(3, 2, 4, bidirectional=True), x, y)
    with pytest.raises(TypeError, match="rnnkit"):
        measure_gradient_flow(torch.nn.Linear(3, 2), x, y)
    with pytest.raises(ValueError, match=r"`every_n_steps` >= 1, but got 0"):
        GradientFlow(x, y, every_n_steps=0)
    with pytest.raises(ValueError, match=r"`every_n_epochs` >= 0, but got -1"):
        GradientFlow(x, y, every_n_epochs=-1)
    with pytest.raises(TypeError, match=r"`every_n_steps` to be an int, but got 2.0"):
        GradientFlow(x, y, every_n_steps=2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"`every_n_epochs` to be an int, but got True"):
        GradientFlow(x, y, every_n_epochs=True)
    with pytest.raises(ValueError, match="no record"):
        GradientFlow(x, y).plot()
    assert math.isnan(FlowRecord(0, 0, [1.0, 0.0, 3.0]).ratio)
    assert math.isnan(FlowRecord(0, 0, [1.0]).ratio)
    assert FlowRecord(0, 0, [1.0, 4.0, 9.0]).ratio == 0.25


class _Resumed:
    def __init__(self, global_step: int) -> None:
        self.model = SequenceClassifier(3, 2, 4)
        self.global_step = global_step


def test_a_resumed_fit_keeps_the_records_up_to_its_checkpoint() -> None:
    x, y = _long_batch(n=2, steps=5)
    flow = GradientFlow(x, y)
    flow.records = [FlowRecord(epoch, 4 * (epoch + 1), [1.0, 1.0]) for epoch in range(3)]
    flow.on_fit_start(_Resumed(global_step=8))  # the checkpoint of epoch 1
    assert [r.epoch for r in flow.records] == [0, 1]
    flow.on_fit_start(_Resumed(global_step=0))  # a fresh fit
    assert flow.records == []
