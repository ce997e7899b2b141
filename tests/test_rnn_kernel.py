"""rnnkit's CPU kernel for plain RNNs: torch's values and gradients, and when it runs."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from rnnkit import SequenceClassifier
from rnnkit import _rnn_kernel as kernel
from rnnkit.encoder import Kernel, RecurrentEncoder


def twins(**options: Any) -> tuple[RecurrentEncoder, RecurrentEncoder]:
    """Two float64 encoders with the same weights: rnnkit's kernel and torch's layer."""
    torch.manual_seed(0)
    fast = RecurrentEncoder(5, 6, **options).double()
    slow = RecurrentEncoder(5, 6, kernel="torch", **options).double()
    slow.load_state_dict(fast.state_dict())
    return fast, slow


def values_and_grads(
    encoder: RecurrentEncoder, x: Tensor, h0: Tensor | None, on: str, lengths: Tensor | None = None
) -> list[Tensor]:
    """Output, h_n and the gradients of a random linear loss on them, wrt x, h0, every weight."""
    output, state = encoder(x, h0, lengths)
    assert isinstance(state, Tensor)
    generator = torch.Generator().manual_seed(1)
    loss = torch.zeros((), dtype=x.dtype)
    if on in ("output", "both"):
        loss = loss + (output * torch.randn(output.shape, generator=generator).double()).sum()
    if on in ("state", "both"):
        loss = loss + (state * torch.randn(state.shape, generator=generator).double()).sum()
    inputs = [x, *([] if h0 is None else [h0]), *encoder.parameters()]
    return [output.detach(), state.detach(), *torch.autograd.grad(loss, inputs)]


@pytest.mark.parametrize("on", ["output", "state", "both"])
@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_kernel_matches_torchs_layer_in_values_and_every_gradient(
    nonlinearity: str, num_layers: int, bidirectional: bool, with_h0: bool, on: str
) -> None:
    fast, slow = twins(
        nonlinearity=nonlinearity, num_layers=num_layers, bidirectional=bidirectional
    )
    x = torch.randn(4, 7, 5, dtype=torch.float64, requires_grad=True)
    states = (2 if bidirectional else 1) * num_layers
    h0 = torch.randn(states, 4, 6, dtype=torch.float64, requires_grad=True) if with_h0 else None
    got = values_and_grads(fast, x, h0, on)
    want = values_and_grads(slow, x, h0, on)
    assert [g.shape for g in got] == [w.shape for w in want]
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_kernel_runs_in_training_and_torchs_layer_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[int, ...]] = []
    real = kernel.run_stack

    def spy(rnn: nn.RNN, x: Tensor, h0: Tensor | None) -> tuple[Tensor, Tensor]:
        calls.append(tuple(x.shape))
        return real(rnn, x, h0)

    monkeypatch.setattr(kernel, "run_stack", spy)
    fast, slow = twins()
    x = torch.randn(3, 8, 5, dtype=torch.float64)
    fast(x)
    slow(x)
    with torch.no_grad():
        fast(x)
    assert calls == [(3, 8, 5)]


def test_kernel_gives_the_same_gradients_as_the_tutorials_formula() -> None:
    torch.manual_seed(0)
    encoder = RecurrentEncoder(5, 6, nonlinearity="relu").double()
    u, w, b_u, b_w = (
        getattr(encoder.rnn, f"{n}_l0") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    )
    x = torch.randn(2, 6, 5, dtype=torch.float64)
    h = torch.zeros(2, 6, dtype=torch.float64)
    for t in range(x.shape[1]):  # H_t = relu(U X_t + W H_{t-1} + b), by hand
        h = torch.relu(x[:, t] @ u.T + b_u + h @ w.T + b_w)
    want = torch.autograd.grad(h.sum(), list(encoder.parameters()))
    _, state = encoder(x)
    assert isinstance(state, Tensor)
    got = torch.autograd.grad(state.sum(), list(encoder.parameters()))
    torch.testing.assert_close(state[0], h.detach())
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_direction_passes_gradcheck() -> None:
    torch.manual_seed(0)
    shapes = [(5, 3, 4), (3, 2), (2, 4), (2, 2), (2,), (2,)]
    args = [torch.randn(*s, dtype=torch.float64, requires_grad=True) for s in shapes]
    for relu, reverse in [(False, False), (False, True), (True, False), (True, True)]:

        def direction(*tensors: Tensor, relu: bool = relu, reverse: bool = reverse) -> Any:
            return kernel._Direction.apply(*tensors, relu, reverse)

        assert torch.autograd.gradcheck(direction, args)


def test_padded_batches_match_torchs_layer() -> None:
    fast, slow = twins(nonlinearity="relu")
    x = torch.randn(4, 7, 5, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([7, 4, 5, 6])
    got = values_and_grads(fast, x, None, "both", lengths)
    want = values_and_grads(slow, x, None, "both", lengths)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_gradients_accumulate_into_separate_bias_grads() -> None:
    fast, slow = twins()
    x = torch.randn(3, 6, 5, dtype=torch.float64)
    for encoder in (fast, slow):
        for _ in range(2):  # two backward passes without zeroing the grads
            torch.autograd.backward(encoder(x)[0].sum())
    for (name, a), b in zip(fast.named_parameters(), slow.parameters(), strict=True):
        assert a.grad is not None, name
        assert b.grad is not None, name
        torch.testing.assert_close(a.grad, b.grad, msg=name)
    assert fast.rnn.bias_ih_l0.grad is not fast.rnn.bias_hh_l0.grad


def test_a_second_derivative_is_refused() -> None:
    fast, _ = twins()
    x = torch.randn(3, 6, 5, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(fast(x)[0].pow(2).sum(), [x], create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        torch.autograd.backward(grad.sum())


def rnn(**options: Any) -> nn.RNN:
    return nn.RNN(5, 6, batch_first=True, **options)


X = torch.randn(3, kernel.MIN_STEPS, 5)


@pytest.mark.parametrize(
    ("layer", "x", "why"),
    [
        (nn.LSTM(5, 6, batch_first=True), X, "an LSTM"),
        (nn.GRU(5, 6, batch_first=True), X, "a GRU"),
        (rnn(bias=False), X, "no biases"),
        (rnn(), X.half(), "float16"),
        (rnn(), X.bfloat16(), "bfloat16"),
        (rnn(), X[:, : kernel.MIN_STEPS - 1], "too short"),
        (rnn(), X[0], "unbatched"),
        (rnn(num_layers=2, dropout=0.5), X, "dropout in training"),
        (rnn(), pack_padded_sequence(X, torch.tensor([4, 2, 1]), batch_first=True), "packed"),
    ],
)
def test_kernel_does_not_apply_where_torchs_layer_must_run(
    layer: nn.RNNBase, x: object, why: str
) -> None:
    assert not kernel.applies(layer, x), why


def test_kernel_applies_to_a_plain_training_pass_only() -> None:
    layer = rnn(num_layers=2, dropout=0.5)
    layer.eval()  # no dropout in evaluation mode
    assert kernel.applies(layer, X)
    assert kernel.applies(rnn(), X.double())
    with torch.no_grad():
        assert not kernel.applies(rnn(), X)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not kernel.applies(rnn(), X)


def test_kernel_option_is_checked_and_models_default_to_auto() -> None:
    with pytest.raises(ValueError, match=r"Expected `kernel` to be one of \('auto', 'torch'\)"):
        RecurrentEncoder(5, 6, kernel="fast")  # type: ignore[arg-type]
    model = SequenceClassifier(5, 3)
    assert model.encoder.kernel == "auto"
    assert "kernel" not in model.config.to_dict()  # the weights do not depend on it


def test_a_classifier_trains_to_the_same_loss_either_way() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 10, 5)
    y = (x[:, :, 0].sum(dim=1) > 0).long()  # the sign of a running sum: learnable
    losses = []
    choices: tuple[Kernel, ...] = ("auto", "torch")
    for choice in choices:
        torch.manual_seed(1)
        model = SequenceClassifier(5, 2, 16, nonlinearity="relu")
        model.encoder.kernel = choice
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        for _ in range(60):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            torch.autograd.backward(loss)
            optimizer.step()
        losses.append(loss.item())
    assert losses[0] < 0.35  # it learned (chance is ln 2 = 0.69)
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
