"""rnnkit's CPU kernels for GRU and LSTM layers: torch's values and gradients, and when they run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from rnnkit import (
    KernelUnavailableError,
    Seq2SeqRegressor,
    SequenceClassifier,
    SequenceTagger,
    Trainer,
)
from rnnkit.kernels import _fused, _fused_loops
from rnnkit.kernels import gru as _gru
from rnnkit.kernels import lstm as _lstm
from rnnkit.models.encoder import RecurrentEncoder
from rnnkit.shapes import State

KERNELS = {"gru": _gru, "lstm": _lstm}
H_IN, H = 4, 5


def twins(cell: str, **options: Any) -> tuple[RecurrentEncoder, RecurrentEncoder]:
    """Two float64 encoders with the same weights: rnnkit's kernel and torch's layer."""
    torch.manual_seed(0)
    fast = RecurrentEncoder(H_IN, H, cell=cell, kernel="rnnkit", **options).double()  # type: ignore[arg-type]
    slow = RecurrentEncoder(H_IN, H, cell=cell, kernel="torch", **options).double()  # type: ignore[arg-type]
    slow.load_state_dict(fast.state_dict())
    return fast, slow


def initial_state(cell: str, states: int, batch: int) -> State:
    """A random ``h0`` (and ``c0`` for an LSTM) that requires grad."""

    def make() -> Tensor:
        return torch.randn(states, batch, H, dtype=torch.float64, requires_grad=True)

    return (make(), make()) if cell == "lstm" else make()


def flat(state: State | None) -> list[Tensor]:
    if state is None:
        return []
    return list(state) if isinstance(state, tuple) else [state]


def values_and_grads(
    encoder: RecurrentEncoder,
    x: Tensor,
    h0: State | None,
    lengths: Tensor | None = None,
) -> list[Tensor]:
    """Outputs, final states and the gradients of a random linear loss on them wrt everything.

    With ``lengths`` only the outputs count (``run_outputs``, the padded path of rnnkit's
    models); otherwise every final state too.
    """
    if lengths is None:
        output, state = encoder(x, h0)
        results = [output, *flat(state)]
    else:
        results = [encoder.run_outputs(x, h0, lengths)]
    generator = torch.Generator().manual_seed(1)
    loss = sum(
        (r * torch.randn(r.shape, generator=generator, dtype=r.dtype)).sum() for r in results
    )
    inputs = [x, *flat(h0), *encoder.parameters()]
    grads = torch.autograd.grad(loss, inputs)
    return [r.detach() for r in results] + list(grads)


def assert_same(got: list[Tensor], want: list[Tensor]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.fixture
def kernel_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records the cell of every call that runs through a GRU or LSTM kernel."""
    calls: list[str] = []
    for cell, module in KERNELS.items():
        real = module.run_stack

        def spy(*args: Any, real: Any = real, cell: str = cell) -> Any:
            calls.append(cell)
            return real(*args)

        monkeypatch.setattr(module, "run_stack", spy)
    return calls


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_kernel_matches_torchs_layer_in_values_and_every_gradient(
    cell: str, num_layers: int, bidirectional: bool, with_h0: bool, padded: bool
) -> None:
    fast, slow = twins(cell, num_layers=num_layers, bidirectional=bidirectional)
    x = torch.randn(3, 5, H_IN, dtype=torch.float64, requires_grad=True)
    states = (2 if bidirectional else 1) * num_layers
    h0 = initial_state(cell, states, 3) if with_h0 else None
    lengths = torch.tensor([5, 2, 4]) if padded else None
    if padded and bidirectional:  # the batch must be packed, which the kernel cannot run
        with pytest.raises(KernelUnavailableError, match="packed sequence"):
            fast(x, h0, lengths)
        return
    assert_same(values_and_grads(fast, x, h0, lengths), values_and_grads(slow, x, h0, lengths))


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_kernel_matches_torchs_layer_on_one_sequence_of_one_step(
    cell: str, bidirectional: bool, kernel_calls: list[str]
) -> None:
    fast, slow = twins(cell, num_layers=2, bidirectional=bidirectional)
    x = torch.randn(1, 1, H_IN, dtype=torch.float64, requires_grad=True)
    h0 = initial_state(cell, 2 * (2 if bidirectional else 1), 1)
    assert_same(values_and_grads(fast, x, h0), values_and_grads(slow, x, h0))
    assert kernel_calls == [cell]


def test_a_one_layer_gru_padded_batch_gathers_its_final_state_through_the_kernel(
    kernel_calls: list[str],
) -> None:
    fast, slow = twins("gru")
    x = torch.randn(4, 6, H_IN, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 3, 5, 1])
    got = values_and_grads(fast, x, None)
    want = values_and_grads(slow, x, None)
    assert_same(got, want)
    output, state = fast(x, None, lengths)
    reference, reference_state = slow(x, None, lengths)
    torch.testing.assert_close(output, reference, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(state, reference_state, rtol=1e-10, atol=1e-12)
    assert kernel_calls == ["gru", "gru"]


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_float32_matches_torchs_layer_to_float32_rounding(cell: str) -> None:
    fast, slow = twins(cell, num_layers=2, bidirectional=True)
    fast.float()
    slow.float()
    x = torch.randn(3, 6, H_IN)
    output, _ = fast(x)
    torch.testing.assert_close(output, slow(x)[0], rtol=1e-5, atol=1e-6)
    assert output.dtype == torch.float32


def test_gru_direction_passes_gradcheck() -> None:
    torch.manual_seed(0)
    shapes = [(3, 2, 2), (2, 2), (6, 2), (6, 2), (6,), (6,)]
    args = [torch.randn(*s, dtype=torch.float64, requires_grad=True) for s in shapes]
    for reverse in (False, True):

        def direction(*tensors: Tensor, reverse: bool = reverse) -> Any:
            return _gru._Direction.apply(*tensors, reverse)

        assert torch.autograd.gradcheck(direction, args)


def test_lstm_direction_passes_gradcheck() -> None:
    torch.manual_seed(0)
    shapes = [(3, 2, 2), (2, 2), (2, 2), (8, 2), (8, 2), (8,), (8,)]
    args = [torch.randn(*s, dtype=torch.float64, requires_grad=True) for s in shapes]
    for reverse in (False, True):

        def direction(*tensors: Tensor, reverse: bool = reverse) -> Any:
            return _lstm._Direction.apply(*tensors, reverse)

        assert torch.autograd.gradcheck(direction, args)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_auto_trains_through_the_kernel_where_its_step_is_compiled(
    kernel_calls: list[str], monkeypatch: pytest.MonkeyPatch, cell: str
) -> None:
    _, encoder = twins(cell)
    encoder.kernel = "auto"
    x = torch.randn(3, 6, H_IN, dtype=torch.float64)
    with torch.no_grad():
        encoder(x)  # evaluation: torch's layer
    encoder(x[:, : {"gru": _gru, "lstm": _lstm}[cell].MIN_STEPS - 1])  # too short
    assert kernel_calls == []
    encoder(x)
    assert kernel_calls == ([cell] if _fused.steps(torch.float64) is not None else [])

    def refuse() -> str:
        raise RuntimeError("no compiler")

    monkeypatch.setattr(_fused, "LOADER", _fused.Loader(refuse))
    before = list(kernel_calls)
    encoder(x)  # without the compiled step torch's layer is the faster: auto keeps it
    assert kernel_calls == before


def test_rnnkit_runs_the_lstm_kernel_with_or_without_autograd(kernel_calls: list[str]) -> None:
    fast, _ = twins("lstm")
    x = torch.randn(3, 6, H_IN, dtype=torch.float64)
    fast(x)
    with torch.no_grad():
        fast(x)
    assert kernel_calls == ["lstm", "lstm"]


def call_hooked(encoder: RecurrentEncoder, x: Tensor) -> None:
    handle = encoder.rnn.register_forward_hook(lambda module, args, out: None)
    try:
        encoder(x)
    finally:
        handle.remove()


def call_in_func_grad(encoder: RecurrentEncoder, x: Tensor) -> None:
    torch.func.grad(lambda inputs: encoder(inputs)[0].sum())(x)


def call_with_forward_ad(encoder: RecurrentEncoder, x: Tensor) -> None:
    fwd: Any = torch.autograd.forward_ad  # its functions are untyped
    with fwd.dual_level():
        encoder(fwd.make_dual(x, torch.randn_like(x)))


def call_in_autocast(encoder: RecurrentEncoder, x: Tensor) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        encoder(x)


def call_on_another_device(encoder: RecurrentEncoder, x: Tensor) -> None:
    encoder.run(x.to("meta"))  # as a CUDA tensor would: not on the CPU


SITUATIONS = {
    "hook": (call_hooked, "hook on the layer"),
    "torch.func": (call_in_func_grad, "torch.func transform"),
    "forward AD": (call_with_forward_ad, "forward-mode AD"),
    "autocast": (call_in_autocast, "autocast"),
    "device": (call_on_another_device, "on meta; the kernel runs on the CPU only"),
}


# torch's forward-mode AD loads its decompositions with the deprecated torch.jit.script
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("situation", sorted(SITUATIONS))
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_rnnkit_kernel_raises_where_it_cannot_stand_in_for_torchs_layer(
    cell: str, situation: str, kernel_calls: list[str]
) -> None:
    fast, _ = twins(cell)
    call, reason = SITUATIONS[situation]
    x = torch.randn(3, 6, H_IN, dtype=torch.float64)
    with pytest.raises(KernelUnavailableError, match=f"rnnkit's {cell.upper()} kernel.*{reason}"):
        call(fast, x)
    fast.kernel = "auto"  # gives way to torch's layer
    if situation != "device":  # torch's layer cannot run on meta inputs with CPU weights
        call(fast, x)
    assert kernel_calls == []


@pytest.mark.parametrize(
    ("layer", "reason"),
    [
        (nn.LSTM(4, 5, batch_first=True, proj_size=2), "proj_size"),
        (nn.GRU(4, 5, batch_first=True, bias=False), "no biases"),
        (nn.GRU(4, 5, num_layers=2, dropout=0.5, batch_first=True), "dropout"),
        (nn.GRU(4, 5), "not batch-first"),
        (nn.RNN(4, 5, batch_first=True), "not a GRU"),
    ],
)
def test_refusals_name_their_reason(layer: nn.RNNBase, reason: str) -> None:
    x = torch.randn(2, 6, 4)
    module = _lstm if isinstance(layer, nn.LSTM) else _gru
    got = module.refusal_reason(layer, x)
    assert got is not None
    assert reason in got
    assert not module.applies(layer, x)
    assert "float16" in str(_gru.refusal_reason(nn.GRU(4, 5, batch_first=True), x.half()))


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_an_lstm_with_a_projection_raises_with_rnnkit_and_runs_torchs_layer_with_auto() -> None:
    encoder = RecurrentEncoder(4, 5, cell="lstm", proj_size=2, kernel="rnnkit")
    x = torch.randn(2, 6, 4)
    with pytest.raises(KernelUnavailableError, match=r"proj_size > 0.*Hint: kernel='auto'"):
        encoder(x)
    encoder.kernel = "auto"
    assert encoder(x)[0].shape == (2, 6, 2)


@pytest.mark.parametrize("whole", [True, False])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_output_can_be_modified_in_place_as_torchs_can(
    cell: str, whole: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_fused_loops, "SEQUENCE", whole)
    grads = []
    for encoder in twins(cell):
        x = torch.linspace(-1, 1, 3 * 6 * H_IN, dtype=torch.float64).view(3, 6, H_IN)
        x.requires_grad_(True)
        output, _ = encoder(x)
        output.mul_(2)  # e.g. an in-place scaling of the outputs
        (grad,) = torch.autograd.grad(output.sum(), [x])
        grads.append(grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_an_lstm_output_is_copied_only_where_its_call_saved_the_states(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoder = RecurrentEncoder(H_IN, H, cell="lstm", kernel="rnnkit")
    x = torch.randn(3, 6, H_IN)
    loops = _fused.steps(x.dtype)
    whole = loops is not None and _fused_loops._sequence(loops)
    assert _lstm.shares_saved_states(encoder.run(x)[0]) is not whole
    monkeypatch.setattr(_fused_loops, "SEQUENCE", False)  # the per-step calls save the states
    assert _lstm.shares_saved_states(encoder.run(x)[0]) is True


def test_models_take_kernel_outside_their_config() -> None:
    classifier = SequenceClassifier(4, 3, 8, cell="gru", kernel="rnnkit")
    regressor = Seq2SeqRegressor(4, hidden_size=8, cell="lstm", kernel="torch")
    tagger = SequenceTagger(4, 3, 8, cell="gru", kernel="rnnkit")
    assert classifier.encoder.kernel == tagger.encoder.kernel == "rnnkit"
    assert regressor.encoder.kernel == "torch"
    for model in (classifier, regressor, tagger):
        assert "kernel" not in model.config.to_dict()
        assert type(model).from_config(model.config).encoder.kernel == "auto"


def test_a_kernel_assigned_with_a_typo_is_refused_at_the_next_call() -> None:
    encoder = RecurrentEncoder(H_IN, H, cell="gru")
    encoder.kernel = "rnnkit "  # type: ignore[assignment]
    with pytest.raises(ValueError, match=r"`kernel` to be one of .*, but got 'rnnkit '"):
        encoder(torch.randn(2, 3, H_IN))


def fitted_weights(kernel_calls: list[str]) -> Iterator[Tensor]:
    torch.manual_seed(0)
    x = torch.randn(40, 6, 3)
    y = (x[:, :, 0].sum(dim=1) > 0).long()
    torch.manual_seed(1)
    model = SequenceClassifier(3, 2, 8, cell="gru", num_layers=2, kernel="rnnkit")
    Trainer(max_epochs=2, batch_size=8, seed=3, progress=False).fit(model, (x, y))
    assert "gru" in kernel_calls
    return iter(model.state_dict().values())


def test_a_seeded_gru_trains_bitwise_reproducibly_through_the_kernel(
    kernel_calls: list[str],
) -> None:
    first = list(fitted_weights(kernel_calls))
    second = list(fitted_weights(kernel_calls))
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_an_empty_batch_runs_as_torchs_layer_does(cell: str) -> None:
    fast, slow = twins(cell, bidirectional=True)
    x = torch.randn(0, 6, H_IN, dtype=torch.float64, requires_grad=True)
    output, state = fast.run(x)  # run() takes batch-first input; forward() refuses N = 0
    expected, expected_state = slow.run(x)
    assert output.shape == expected.shape == (0, 6, 2 * H)
    first, want = (state[0], expected_state[0]) if cell == "lstm" else (state, expected_state)
    assert isinstance(first, Tensor)
    assert isinstance(want, Tensor)
    assert first.shape == want.shape == (2, 0, H)
    torch.autograd.backward(output.sum())
    assert x.grad is not None
    assert x.grad.shape == x.shape
