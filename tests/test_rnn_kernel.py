"""rnnkit's CPU kernel for plain RNNs: torch's values and gradients, and when it runs."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from rnnkit import SequenceClassifier
from rnnkit.kernels import rnn as kernel
from rnnkit.kernels._common import summed_outer
from rnnkit.models.encoder import Kernel, RecurrentEncoder


def twins(**options: Any) -> tuple[RecurrentEncoder, RecurrentEncoder]:
    """Two float64 encoders with the same weights: rnnkit's kernel and torch's layer."""
    torch.manual_seed(0)
    fast = RecurrentEncoder(5, 6, **options).double()
    slow = RecurrentEncoder(5, 6, kernel="torch", **options).double()
    slow.load_state_dict(fast.state_dict())
    return fast, slow


def values_and_grads(
    encoder: RecurrentEncoder,
    x: Tensor,
    h0: Tensor | None,
    on: str = "both",
    lengths: Tensor | None = None,
) -> list[Tensor | None]:
    """Output, h_n and the gradients of a random linear loss on them, wrt x, h0, every weight.

    A gradient is ``None`` for an input (x or h0) that does not require one.
    """
    output, state = encoder(x, h0, lengths)
    assert isinstance(state, Tensor)
    generator = torch.Generator().manual_seed(1)
    loss = torch.zeros((), dtype=x.dtype)
    if on in ("output", "both"):
        loss = loss + (output * torch.randn(output.shape, generator=generator).double()).sum()
    if on in ("state", "both"):
        loss = loss + (state * torch.randn(state.shape, generator=generator).double()).sum()
    inputs = [x, *([] if h0 is None else [h0]), *encoder.parameters()]
    grads = iter(torch.autograd.grad(loss, [t for t in inputs if t.requires_grad]))
    return [
        output.detach(),
        state.detach(),
        *(next(grads) if t.requires_grad else None for t in inputs),
    ]


def assert_same(got: list[Tensor | None], want: list[Tensor | None]) -> None:
    """The same tensors (shapes, and values to float64 rounding) and the same missing ones."""
    assert [g is None for g in got] == [w is None for w in want]
    for g, w in zip(got, want, strict=True):
        if g is not None and w is not None:
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


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
    assert all(g is not None for g in got)
    assert_same(got, want)


def test_few_input_features_match_torch_through_both_weight_product_orders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With H_in at most half the gate width, the input weights' gradient is (xᵀ g)ᵀ."""
    transposed: list[bool] = []

    def spy(grads: Tensor, inputs: Tensor) -> Tensor:
        transposed.append(2 * inputs.shape[1] <= grads.shape[1])
        return summed_outer(grads, inputs)

    monkeypatch.setattr(kernel, "summed_outer", spy)
    torch.manual_seed(0)
    fast = RecurrentEncoder(3, 8, num_layers=2, bidirectional=True).double()
    slow = RecurrentEncoder(3, 8, num_layers=2, bidirectional=True, kernel="torch").double()
    slow.load_state_dict(fast.state_dict())
    x = torch.randn(4, 7, 3, dtype=torch.float64, requires_grad=True)
    assert_same(values_and_grads(fast, x, None), values_and_grads(slow, x, None))
    assert sorted(set(transposed)) == [False, True]  # layer 1: 3 inputs; layer 2: 16


@pytest.fixture
def kernel_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Records the input shape of every call that runs through rnnkit's kernel."""
    calls: list[tuple[int, ...]] = []
    real = kernel.run_stack

    def spy(rnn: nn.RNN, x: Tensor, h0: Tensor | None) -> tuple[Tensor, Tensor]:
        calls.append(tuple(x.shape))
        return real(rnn, x, h0)

    monkeypatch.setattr(kernel, "run_stack", spy)
    return calls


LAYOUTS: dict[str, dict[str, Any]] = {
    "time-major": dict(batch_first=False),
    "unbatched": dict(unbatched=True),
    "non-contiguous": dict(non_contiguous=True),
    "one sequence": dict(batch=1),
    "shortest kernel length": dict(steps=kernel.MIN_STEPS),
    "x without grad": dict(x_grad=False),
    "h0 without grad": dict(h0="no grad"),
    "h0 with grad": dict(h0="grad"),
}


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_kernel_matches_torchs_layer_in_every_layout(
    layout: str, bidirectional: bool, kernel_calls: list[tuple[int, ...]]
) -> None:
    o: dict[str, Any] = {"batch": 3, "steps": 6, "x_grad": True, "h0": None, **LAYOUTS[layout]}
    batch_first = o.get("batch_first", True)
    fast, slow = twins(num_layers=2, bidirectional=bidirectional, batch_first=batch_first)
    shape = (o["batch"], o["steps"], 5) if batch_first else (o["steps"], o["batch"], 5)
    x = torch.randn(*shape, dtype=torch.float64)
    if o.get("non_contiguous"):
        x = torch.randn(shape[0], shape[1], 10, dtype=torch.float64)[..., ::2]
    if o.get("unbatched"):
        x = x[0]
    x.requires_grad_(o["x_grad"])
    h0 = None
    if o["h0"] is not None:
        lead = (2 * (2 if bidirectional else 1),)
        h0 = torch.randn(*lead, o["batch"], 6, dtype=torch.float64)
        h0.requires_grad_(o["h0"] == "grad")
    got, want = values_and_grads(fast, x, h0), values_and_grads(slow, x, h0)
    assert len(kernel_calls) == 1  # the fast twin ran the kernel, the slow one did not
    assert_same(got, want)


def test_kernel_runs_in_training_and_torchs_layer_otherwise(
    kernel_calls: list[tuple[int, ...]],
) -> None:
    fast, slow = twins()
    x = torch.randn(3, 8, 5, dtype=torch.float64)
    fast(x)
    slow(x)
    with torch.no_grad():
        fast(x)
    assert kernel_calls == [(3, 8, 5)]


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


def test_padded_batches_match_torchs_layer(kernel_calls: list[tuple[int, ...]]) -> None:
    fast, slow = twins(nonlinearity="relu")
    x = torch.randn(4, 7, 5, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([7, 4, 5, 6])
    got = values_and_grads(fast, x, None, "both", lengths)
    want = values_and_grads(slow, x, None, "both", lengths)
    assert kernel_calls == [(4, 7, 5)]  # padded, then each sequence's last valid step gathered
    assert_same(got, want)


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
    expected = r"Expected `kernel` to be one of \('auto', 'torch', 'rnnkit'\)"
    with pytest.raises(ValueError, match=expected):
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


def test_a_hooked_layer_runs_torchs_call_so_its_hooks_run() -> None:
    fast, _ = twins()
    x = torch.randn(3, 6, 5, dtype=torch.float64)
    seen: list[int] = []
    handle = fast.rnn.register_forward_hook(lambda module, args, out: seen.append(1))
    assert not kernel.applies(fast.rnn, x)
    fast(x)
    assert seen == [1]
    handle.remove()
    assert kernel.applies(fast.rnn, x)


def test_legacy_spectral_norm_trains_as_with_torchs_layer() -> None:
    losses = []
    choices: tuple[Kernel, ...] = ("auto", "torch")
    for choice in choices:
        torch.manual_seed(0)
        encoder = RecurrentEncoder(5, 6, kernel=choice)
        nn.utils.spectral_norm(encoder.rnn, "weight_hh_l0")  # a forward pre-hook
        optimizer = torch.optim.SGD(encoder.parameters(), lr=0.5)
        x = torch.randn(4, 6, 5, generator=torch.Generator().manual_seed(1))
        for _ in range(3):
            optimizer.zero_grad()
            loss = encoder(x)[0].pow(2).sum()
            torch.autograd.backward(loss)
            optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_the_output_can_be_modified_in_place_as_torchs_can() -> None:
    grads = []
    for encoder in twins():
        x = torch.randn(3, 6, 5, dtype=torch.float64, requires_grad=True)
        with torch.no_grad():
            x.copy_(torch.linspace(-1, 1, x.numel(), dtype=x.dtype).view(x.shape))
        output, _ = encoder(x)
        output.mul_(2)  # e.g. an in-place dropout or scaling of the outputs
        (grad,) = torch.autograd.grad(output.sum(), [x])
        grads.append(grad)
    torch.testing.assert_close(grads[0], grads[1])


# torch's forward-mode AD loads its decompositions with the deprecated torch.jit.script
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_functorch_transforms_and_forward_ad_fall_back_to_torchs_layer() -> None:
    fast, slow = twins()
    x = torch.randn(3, 6, 5, dtype=torch.float64)
    tangent = torch.randn_like(x)

    def total(encoder: RecurrentEncoder) -> Any:
        return lambda inputs: encoder(inputs)[0].sum()

    for transform in (torch.func.grad, torch.func.jacrev):
        torch.testing.assert_close(transform(total(fast))(x), transform(total(slow))(x))
    got = torch.func.jvp(total(fast), (x,), (tangent,))
    want = torch.func.jvp(total(slow), (x,), (tangent,))
    torch.testing.assert_close(got, want)
    fwd: Any = torch.autograd.forward_ad  # its functions are untyped
    with fwd.dual_level():
        dual = fwd.make_dual(x, tangent)
        assert not kernel.applies(fast.rnn, dual)
        got_dual = fwd.unpack_dual(fast(dual)[0]).tangent
        want_dual = fwd.unpack_dual(slow(dual)[0]).tangent
    torch.testing.assert_close(got_dual, want_dual)


def test_jit_tracing_runs_torchs_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    fast, _ = twins()
    x = torch.randn(3, 6, 5, dtype=torch.float64)
    assert kernel.applies(fast.rnn, x)
    monkeypatch.setattr(torch.jit, "is_tracing", lambda: True)  # a trace records torch's ops
    assert not kernel.applies(fast.rnn, x)


def test_an_encoder_pickled_before_the_option_runs_the_kernel() -> None:
    fast, _ = twins()
    del fast.kernel  # as unpickled from a version without the attribute
    assert fast.kernel == "auto"
    assert fast(torch.randn(2, 6, 5, dtype=torch.float64))[0].shape == (2, 6, 6)


def test_an_empty_batch_runs() -> None:
    fast, slow = twins()
    x = torch.randn(0, 6, 5, dtype=torch.float64, requires_grad=True)
    assert kernel.applies(fast.rnn, x)
    output, state = fast.run(x)
    assert output.shape == slow.run(x)[0].shape == (0, 6, 6)
    assert isinstance(state, Tensor)
    assert state.shape == (1, 0, 6)
