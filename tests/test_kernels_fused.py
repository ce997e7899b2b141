"""The GRU and LSTM kernels' compiled step: torch's values and gradients, and the fall-back."""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from rnnkit.kernels import _fused, _fused_loops
from rnnkit.kernels import gru as _gru
from rnnkit.kernels import lstm as _lstm
from rnnkit.models.encoder import RecurrentEncoder
from rnnkit.shapes import State

H_IN, H = 3, 4
DIRECTIONS = {"gru": _gru._Direction, "lstm": _lstm._Direction}


@pytest.fixture
def compiled() -> _fused.Steps:
    """The compiled loops; the test is skipped where this machine cannot build them.

    With ``RNNKIT_REQUIRE_FUSED=1`` (as CI sets it) a failed build fails the test instead.
    """
    loops = _fused.steps(torch.float64)
    if loops is None:
        missing(f"the compiled step cannot be built here: {_fused.unavailable_reason()}")
    assert loops is not None
    return loops


def missing(reason: str) -> None:
    """Skip the test, or fail it where ``RNNKIT_REQUIRE_FUSED=1`` requires the compiled step."""
    if os.environ.get("RNNKIT_REQUIRE_FUSED") == "1":
        pytest.fail(f"RNNKIT_REQUIRE_FUSED=1, but {reason}")
    pytest.skip(reason)


@pytest.fixture
def refused(monkeypatch: pytest.MonkeyPatch) -> _fused.Loader:
    """A loader whose build fails as it does without ``ninja``."""

    def no_ninja() -> str:
        raise RuntimeError("Ninja is required to load C++ extensions (pip install ninja)")

    loader = _fused.Loader(no_ninja)
    monkeypatch.setattr(_fused, "LOADER", loader)
    return loader


@pytest.fixture
def fused_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every run of a compiled forward or backward loop."""
    calls: list[str] = []
    for name in ("gru_forward", "gru_backward", "lstm_forward", "lstm_backward"):
        real = getattr(_fused_loops, name)

        def spy(*args: Any, real: Any = real, name: str = name, **kwargs: Any) -> Any:
            calls.append(name)
            return real(*args, **kwargs)

        monkeypatch.setattr(_fused_loops, name, spy)
    return calls


def twins(cell: str, **options: Any) -> tuple[RecurrentEncoder, RecurrentEncoder]:
    torch.manual_seed(0)
    fast = RecurrentEncoder(H_IN, H, cell=cell, kernel="rnnkit", **options).double()  # type: ignore[arg-type]
    slow = RecurrentEncoder(H_IN, H, cell=cell, kernel="torch", **options).double()  # type: ignore[arg-type]
    slow.load_state_dict(fast.state_dict())
    return fast, slow


def start(cell: str, states: int, batch: int) -> State:
    def make() -> Tensor:
        return torch.randn(states, batch, H, dtype=torch.float64, requires_grad=True)

    return (make(), make()) if cell == "lstm" else make()


def values_and_grads(encoder: RecurrentEncoder, x: Tensor, h0: State | None) -> list[Tensor]:
    """Outputs, final states and the gradients of a random linear loss on them wrt everything."""
    output, state = encoder(x, h0)
    finals = list(state) if isinstance(state, tuple) else [state]
    results = [output, *finals]
    generator = torch.Generator().manual_seed(1)
    loss = sum(
        (r * torch.randn(r.shape, generator=generator, dtype=r.dtype)).sum() for r in results
    )
    given = [] if h0 is None else list(h0) if isinstance(h0, tuple) else [h0]
    grads = torch.autograd.grad(loss, [x, *given, *encoder.parameters()])
    return [r.detach() for r in results] + list(grads)


def assert_same_as_torch(cell: str, num_layers: int, bidirectional: bool, with_h0: bool) -> None:
    fast, slow = twins(cell, num_layers=num_layers, bidirectional=bidirectional)
    x = torch.randn(3, 5, H_IN, dtype=torch.float64, requires_grad=True)
    states = (2 if bidirectional else 1) * num_layers
    h0 = start(cell, states, 3) if with_h0 else None
    got, want = values_and_grads(fast, x, h0), values_and_grads(slow, x, h0)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_compiled_step_matches_torchs_layer_in_values_and_every_gradient(
    cell: str,
    num_layers: int,
    bidirectional: bool,
    with_h0: bool,
    compiled: _fused.Steps,
    fused_calls: list[str],
) -> None:
    assert_same_as_torch(cell, num_layers, bidirectional, with_h0)
    directions = num_layers * (2 if bidirectional else 1)
    assert fused_calls.count(f"{cell}_forward") == directions
    assert fused_calls.count(f"{cell}_backward") == directions


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_compiled_step_passes_gradcheck(
    cell: str, compiled: _fused.Steps, fused_calls: list[str]
) -> None:
    torch.manual_seed(0)
    gates = 3 if cell == "gru" else 4
    shapes = [(3, 2, 2), (2, 2), (2, 2), (2 * gates, 2), (2 * gates, 2), (2 * gates,)]
    shapes += [(2 * gates,)]
    if cell == "gru":
        del shapes[2]  # the GRU has no c0
    args = [torch.randn(*s, dtype=torch.float64, requires_grad=True) for s in shapes]
    for reverse in (False, True):

        def direction(*tensors: Tensor, reverse: bool = reverse) -> Any:
            return DIRECTIONS[cell].apply(*tensors, reverse)

        assert torch.autograd.gradcheck(direction, args)
    assert f"{cell}_backward" in fused_calls


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_compiled_step_saturates_and_keeps_nan_as_torch_does(
    cell: str, compiled: _fused.Steps
) -> None:
    fast, slow = twins(cell)
    x = torch.tensor([[[1e4, -1e4, 0.0]] * 4, [[-800.0, 1e-9, 3e-3]] * 4], dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fast(x)[0], slow(x)[0], rtol=1e-12, atol=1e-15)
        x[0, 1, 0] = float("nan")
        assert fast(x)[0][0, 1:].isnan().all()


def test_float32_compiled_step_matches_torch_to_float32_rounding(compiled: _fused.Steps) -> None:
    for cell in ("gru", "lstm"):
        fast, slow = twins(cell, num_layers=2)
        fast.float()
        slow.float()
        x = torch.randn(4, 7, H_IN) * 3
        torch.testing.assert_close(fast(x)[0], slow(x)[0], rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_refused_build_falls_back_to_torch_operations_with_the_same_results(
    cell: str, refused: _fused.Loader, fused_calls: list[str]
) -> None:
    assert_same_as_torch(cell, num_layers=2, bidirectional=True, with_h0=True)
    assert fused_calls == []
    assert _fused.unavailable_reason() == (
        "RuntimeError: Ninja is required to load C++ extensions (pip install ninja)"
    )


def test_the_build_is_tried_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    tries: list[int] = []

    def broken() -> str:
        tries.append(1)
        raise OSError("no compiler")

    monkeypatch.setattr(_fused, "LOADER", _fused.Loader(broken))
    assert _fused.steps(torch.float32) is None
    assert _fused.steps(torch.float64) is None
    assert tries == [1]
    assert _fused.unavailable_reason() == "OSError: no compiler"


def test_the_environment_can_turn_the_build_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RNNKIT_FUSED", "0")
    monkeypatch.setattr(_fused, "LOADER", _fused.Loader())
    assert _fused.steps(torch.float64) is None
    assert "RNNKIT_FUSED=0" in str(_fused.unavailable_reason())


BAD_STARTS = {
    "another dtype": lambda: torch.zeros(2, H),
    "another batch size": lambda: torch.zeros(1, H, dtype=torch.float64),
}


@pytest.mark.parametrize("bad", sorted(BAD_STARTS))
@pytest.mark.parametrize(
    ("cell", "which"), [("gru", "h0"), ("lstm", "h0"), ("lstm", "c0"), ("lstm", "both")]
)
def test_an_initial_state_of_another_dtype_or_size_raises_and_is_never_read_as_raw_memory(
    cell: str, which: str, bad: str, compiled: _fused.Steps, fused_calls: list[str]
) -> None:
    gates = 3 if cell == "gru" else 4
    x = torch.randn(5, 2, H_IN, dtype=torch.float64)
    weights = [torch.randn(gates * H, n, dtype=torch.float64) for n in (H_IN, H)]
    weights += [torch.randn(gates * H, dtype=torch.float64) for _ in range(2)]
    good = torch.zeros(2, H, dtype=torch.float64)
    starts = [BAD_STARTS[bad]()]
    if cell == "lstm":
        starts = {"h0": [starts[0], good], "c0": [good, starts[0]], "both": starts * 2}[which]
    if which == "c0":  # torch's operations may broadcast or promote it; never the raw loops
        with contextlib.suppress(RuntimeError):
            DIRECTIONS[cell].apply(x, *starts, *weights, False)
    else:
        with pytest.raises(RuntimeError, match=r"dtype|Float|Double|shape|size"):
            DIRECTIONS[cell].apply(x, *starts, *weights, False)
    assert fused_calls == []


def _leaf(*shape: int) -> Tensor:
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


STRIDED_STARTS: dict[str, tuple[int, Callable[[], Tensor]]] = {
    # (layers, a non-contiguous h0 of shape (layers, 3, H))
    "transposed, 2 layers": (2, lambda: _leaf(3, 2, H).transpose(0, 1)),
    "expanded (a learned state)": (1, lambda: _leaf(1, 1, H).expand(1, 3, H)),
}


@pytest.mark.parametrize("start", sorted(STRIDED_STARTS))
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_strided_initial_state_is_read_as_torchs_layer_reads_it(
    cell: str, start: str, compiled: _fused.Steps, fused_calls: list[str]
) -> None:
    layers, make = STRIDED_STARTS[start]
    fast, slow = twins(cell, num_layers=layers)
    x = torch.randn(3, 5, H_IN, dtype=torch.float64, requires_grad=True)
    h0 = make()
    assert not h0.is_contiguous()
    state: State = (h0, _leaf(*h0.shape)) if cell == "lstm" else h0
    got_all, want_all = values_and_grads(fast, x, state), values_and_grads(slow, x, state)
    for got, want in zip(got_all, want_all, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert fused_calls.count(f"{cell}_forward") == layers  # the compiled loops read it


LOSSES = {
    "final state only": lambda output, state: state.sum(),
    "outputs only, an expanded gradient": lambda output, state: output.sum(),
    "outputs and final state": lambda output, state: (output * output).sum() + state.sum(),
}


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("path", ["compiled", "refused"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_unused_outputs_and_expanded_gradients_give_torchs_gradients(
    cell: str, path: str, loss: str, request: pytest.FixtureRequest
) -> None:
    request.getfixturevalue(path)
    grads = []
    for encoder in twins(cell, num_layers=2, bidirectional=True):
        x = torch.randn(3, 5, H_IN, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        x.requires_grad_(True)
        output, state = encoder(x)
        final = state[1] if isinstance(state, tuple) else state  # c_n for an LSTM
        LOSSES[loss](output, final).backward()
        grads.append([x.grad, *(p.grad for p in encoder.parameters())])
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def pooled_roles(cell: str, loops: _fused.Steps) -> int:
    """How many pooled buffers one call saves: the LSTM's whole-recurrence call adds ``joined``."""
    return 2 if cell == "gru" else 4 if _fused_loops._sequence(loops) else 3


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_saved_buffers_are_reused_only_once_their_graph_is_gone(
    cell: str, compiled: _fused.Steps
) -> None:
    fast, slow = twins(cell)
    inputs = [torch.randn(3, 5, H_IN, dtype=torch.float64) for _ in range(3)]

    def losses(encoder: RecurrentEncoder) -> list[Tensor]:  # three graphs alive at once
        return [encoder(x)[0].pow(2).sum() for x in inputs]

    got = [torch.autograd.grad(loss, list(fast.parameters())) for loss in losses(fast)]
    want = [torch.autograd.grad(loss, list(slow.parameters())) for loss in losses(slow)]
    for g, w in zip(got, want, strict=True):
        for a, b in zip(g, w, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    held = [b for _, b in _fused_loops.pooled() if b.shape[:2] == (5, 3)]
    assert len(held) >= 3 * pooled_roles(cell, compiled)  # one set per graph that was alive
    assert all(_fused_loops._unshared(b) for b in held)  # free again, to be reused
    fast(inputs[0])[0].sum().backward()
    assert len([b for _, b in _fused_loops.pooled() if b.shape[:2] == (5, 3)]) == len(held)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_call_under_inference_mode_leaves_nothing_that_a_training_call_reuses(
    cell: str, compiled: _fused.Steps
) -> None:
    fast, slow = twins(cell)
    x = torch.randn(2, 7, H_IN, dtype=torch.float64)  # a shape no other test pools
    with torch.inference_mode():
        fast(x)
    assert not any(b.is_inference() for _, b in _fused_loops.pooled())
    got = torch.autograd.grad(fast(x)[0].pow(2).sum(), list(fast.parameters()))
    want = torch.autograd.grad(slow(x)[0].pow(2).sum(), list(slow.parameters()))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_saved_buffer_pool_stays_bounded_over_many_batch_shapes(
    cell: str, compiled: _fused.Steps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(_fused_loops._SCRATCH, "pool", raising=False)  # start empty
    encoder = RecurrentEncoder(H_IN, H, cell=cell, kernel="rnnkit").double()  # type: ignore[arg-type]
    roles = pooled_roles(cell, compiled)
    for steps in range(2, 14):  # a padded dataset: every batch its own length, some a smaller N
        x = torch.randn(3 - steps % 2, steps, H_IN, dtype=torch.float64)
        encoder(x)[0].sum().backward()
        held = [(role, b) for role, b in _fused_loops.pooled() if role.startswith(cell)]
        assert len({role for role, _ in held}) == roles
        for role in {role for role, _ in held}:
            shapes = {(b.shape, b.dtype) for r, b in held if r == role}
            assert len(shapes) <= _fused_loops._SHAPES
        assert len(held) <= roles * _fused_loops._SHAPES  # one graph at a time: one per shape
    latest = {tuple(b.shape[:2]) for role, b in _fused_loops.pooled() if role.startswith(cell)}
    assert latest == {(10, 3), (11, 2), (12, 3), (13, 2)}  # the least recently used went


@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_reused_lstm_buffer_holds_no_earlier_h0_when_none_is_given(
    bidirectional: bool, compiled: _fused.Steps
) -> None:
    fast, slow = twins("lstm", bidirectional=bidirectional)
    x = torch.randn(3, 5, H_IN, dtype=torch.float64, requires_grad=True)
    h0 = start("lstm", 2 if bidirectional else 1, 3)
    h0[0].data.fill_(5.0)  # a first call leaves h0 in its pooled buffers
    values_and_grads(fast, x, h0)
    for got, want in zip(
        values_and_grads(fast, x, None), values_and_grads(slow, x, None), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_the_saved_buffer_pool_keeps_only_the_latest_shape_past_its_byte_budget(
    compiled: _fused.Steps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(_fused_loops._SCRATCH, "pool", raising=False)
    monkeypatch.setattr(_fused_loops, "_BYTES", 1)  # less than any buffer
    encoder = RecurrentEncoder(H_IN, H, cell="lstm", kernel="rnnkit").double()
    for steps in (3, 4, 5):
        encoder(torch.randn(2, steps, H_IN, dtype=torch.float64))[0].sum().backward()
        assert {b.shape[:2] for _, b in _fused_loops.pooled()} == {(steps, 2)}


def test_a_pooled_buffer_whose_memory_another_tensor_shares_is_not_reused(
    compiled: _fused.Steps,
) -> None:
    fast, _ = twins("gru")
    fast(torch.randn(2, 3, H_IN, dtype=torch.float64))[0].sum().backward()
    buffer = next(b for _, b in _fused_loops.pooled() if b.shape[:2] == (3, 2))
    assert _fused_loops._unshared(buffer)
    alias = buffer.detach()  # another tensor object, the same memory
    assert not _fused_loops._unshared(buffer)
    del alias
    assert _fused_loops._unshared(buffer)


def graphs_grads(encoder: RecurrentEncoder, inputs: list[Tensor]) -> list[tuple[Tensor, ...]]:
    """Parameter gradients of several graphs built, all alive, under a detaching pack hook."""
    kept: list[Tensor] = []

    def pack(t: Tensor) -> Tensor:
        kept.append(t.detach())  # an alias of the saved memory, as offloading hooks keep
        return kept[-1]

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        losses = [encoder(x)[0].pow(2).sum() for x in inputs]
    return [torch.autograd.grad(loss, list(encoder.parameters())) for loss in losses]


@pytest.mark.parametrize("private_apis", ["present", "missing"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_saved_tensor_hooks_that_keep_an_alias_get_torchs_gradients(
    cell: str,
    private_apis: str,
    compiled: _fused.Steps,
    fused_calls: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if private_apis == "missing":  # an older or newer torch: every call gets new buffers
        monkeypatch.delattr(torch._C, "_storage_Use_Count")
    fast, slow = twins(cell)
    inputs = [torch.randn(2, 6, H_IN, dtype=torch.float64) for _ in range(3)]
    before = len(_fused_loops.pooled())
    got, want = graphs_grads(fast, inputs), graphs_grads(slow, inputs)
    for g, w in zip(got, want, strict=True):
        for a, b in zip(g, w, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert fused_calls.count(f"{cell}_forward") == 3
    assert len(_fused_loops.pooled()) == before  # nothing pooled: it would share memory
    if private_apis == "missing":
        fast(inputs[0])[0].sum().backward()
        assert len(_fused_loops.pooled()) == before


BAD_BIASES = {
    "another dtype": lambda b: b.float(),
    "too short (H elements)": lambda b: b[:H].clone(),
}


@pytest.mark.parametrize("bias", sorted(BAD_BIASES))
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_bias_of_another_dtype_or_length_raises_and_is_never_read_as_raw_memory(
    cell: str, bias: str, compiled: _fused.Steps, fused_calls: list[str]
) -> None:
    gates = 3 if cell == "gru" else 4
    x = torch.randn(5, 2, H_IN, dtype=torch.float64)
    weights = [torch.randn(gates * H, n, dtype=torch.float64) for n in (H_IN, H)]
    biases = [BAD_BIASES[bias](torch.randn(gates * H, dtype=torch.float64)) for _ in range(2)]
    starts = [None] * (1 if cell == "gru" else 2)
    with pytest.raises(RuntimeError):
        DIRECTIONS[cell].apply(x, *starts, *weights, *biases, False)
    assert fused_calls == []
    torch_layer = torch.nn.GRU(H_IN, H) if cell == "gru" else torch.nn.LSTM(H_IN, H)
    torch_layer.double()
    torch_layer.bias_ih_l0.data = biases[0]
    with pytest.raises(RuntimeError):  # as torch's layer does
        torch_layer(x)


def test_a_failed_build_fails_the_compiled_step_tests_where_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RNNKIT_REQUIRE_FUSED", "1")
    with pytest.raises(pytest.fail.Exception, match="RNNKIT_REQUIRE_FUSED=1, but no compiler"):
        missing("no compiler")
    monkeypatch.delenv("RNNKIT_REQUIRE_FUSED")
    with pytest.raises(pytest.skip.Exception, match="no compiler"):
        missing("no compiler")


def test_a_failed_build_logs_one_warning_that_says_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> str:
        raise OSError("c++: not found")

    monkeypatch.setattr(_fused, "LOADER", _fused.Loader(broken))
    with caplog.at_level("WARNING", logger="rnnkit.kernels"):
        _fused.steps(torch.float32)
        _fused.steps(torch.float64)
    assert [r.getMessage() for r in caplog.records] == [
        "rnnkit's compiled GRU/LSTM step could not be built (OSError: c++: not found); the "
        "kernels run their steps as torch operations, with the same results, more slowly"
    ]


# torch warns from inside its own tracer when it resumes after the kernel's node
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
@pytest.mark.slow
def test_torch_compile_traces_the_torch_operation_steps(fused_calls: list[str]) -> None:
    torch._dynamo.reset()
    fast, slow = twins("gru")
    x = torch.randn(2, 5, H_IN, dtype=torch.float64)
    compiled = torch.compile(fast, backend="eager")
    torch.testing.assert_close(compiled(x)[0], slow(x)[0], rtol=1e-10, atol=1e-12)
    assert fused_calls == []


@pytest.fixture
def sequence_loops(compiled: _fused.Steps) -> _fused.Steps:
    """The compiled loops, where they can run a whole recurrence in one call (else skipped)."""
    if not compiled.sequence:
        pytest.skip("torch's CPU library exports no BLAS gemm that the loops can call")
    return compiled


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch", [1, 17])
@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_whole_recurrence_calls_match_the_per_step_calls(
    cell: str,
    bidirectional: bool,
    with_h0: bool,
    batch: int,
    dtype: torch.dtype,
    sequence_loops: _fused.Steps,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_fused_loops, "_threads", lambda rows: min(3, rows))  # 17 rows: 5, 6, 6
    fast, _ = twins(cell, num_layers=2, bidirectional=bidirectional)
    fast = fast.to(dtype)
    x = torch.randn(batch, 6, H_IN, dtype=dtype, requires_grad=True)

    def make() -> Tensor:
        return torch.randn(4 if bidirectional else 2, batch, H, dtype=dtype, requires_grad=True)

    h0: State | None = ((make(), make()) if cell == "lstm" else make()) if with_h0 else None
    whole = values_and_grads(fast, x, h0)
    monkeypatch.setattr(_fused_loops, "SEQUENCE", False)
    per_step = values_and_grads(fast, x, h0)
    tolerance = 1e-12 if dtype == torch.float64 else None  # None: float32's defaults
    for w, p in zip(whole, per_step, strict=True):
        assert w.shape == p.shape
        torch.testing.assert_close(w, p, rtol=tolerance, atol=tolerance)


def test_a_gemm_that_does_not_compute_the_product_is_refused() -> None:
    calls: list[int] = []
    do_nothing = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 13)(lambda *args: calls.append(1))
    address = ctypes.cast(do_nothing, ctypes.c_void_p).value
    assert address is not None
    assert not _fused._computes_right(address, torch.float32)
    assert calls == [1]  # it was called, and its (missing) result checked


class _NoOpenMPCompiler:
    """Stands in for ``torch.utils.cpp_extension``: refuses ``-fopenmp``, else "builds"."""

    def __init__(self) -> None:
        self.builds: list[tuple[str, list[str]]] = []

    def load(self, name: str, sources: list[str], **options: Any) -> None:
        self.builds.append((name, list(options["extra_cflags"])))
        if "-fopenmp" in options["extra_cflags"]:
            raise RuntimeError("clang: error: unsupported option '-fopenmp'")
        (Path(options["build_directory"]) / f"{name}.so").write_bytes(b"")


def test_a_compiler_without_openmp_still_builds_the_loops_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiler = _NoOpenMPCompiler()
    monkeypatch.setenv("RNNKIT_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(_fused, "_flags", lambda: ["-O3", "-fopenmp"])
    monkeypatch.setattr(_fused, "_import_quietly", lambda: compiler)
    library = Path(_fused.build())
    assert library.name == "rnnkit_fused_serial.so"
    assert compiler.builds == [
        ("rnnkit_fused", ["-O3", "-fopenmp"]),
        ("rnnkit_fused_serial", ["-O3"]),
    ]
    assert Path(_fused.build()) == library  # the next process loads it: no compiler called
    assert len(compiler.builds) == 2


def test_a_compile_error_of_every_variant_raises_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(name: str, sources: list[str], **options: Any) -> None:
        raise RuntimeError(f"error building {name}")

    monkeypatch.setenv("RNNKIT_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(_fused, "_flags", lambda: ["-O3", "-fopenmp"])
    monkeypatch.setattr(
        _fused, "_import_quietly", lambda: type("Broken", (), {"load": staticmethod(broken)})
    )
    with pytest.raises(RuntimeError, match=r"error building rnnkit_fused$"):
        _fused.build()


def test_the_environment_can_keep_the_per_step_calls(
    sequence_loops: _fused.Steps, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _fused_loops._sequence(sequence_loops)
    monkeypatch.setenv("RNNKIT_FUSED_SEQUENCE", "0")
    assert not _fused_loops._sequence(sequence_loops)
    fast, slow = twins("lstm")
    x = torch.randn(3, 5, H_IN, dtype=torch.float64, requires_grad=True)
    for got, want in zip(
        values_and_grads(fast, x, None), values_and_grads(slow, x, None), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_float32_compiled_tanh_is_within_3_6e_7_of_tanh_relative_down_to_1e_35() -> None:
    loops = _fused.steps(torch.float32)
    if loops is None:
        missing(f"the compiled step cannot be built here: {_fused.unavailable_reason()}")
    assert loops is not None
    tiny = [1e-40, -1e-38, 2e-36]  # p * x underflows: within 3e-43, absolute
    edges = [0.0, -0.0, 1e-35, 1e-30, -1e-8, 1e-4, 20.0, -88.0, float("inf"), -float("inf"), *tiny]
    grid = torch.cat([torch.linspace(-10, 10, 400_001), torch.tensor(edges)])
    hidden = grid.numel()
    gates = torch.zeros(1, 4 * hidden)
    gates[0, 2 * hidden : 3 * hidden] = grid  # the g block, which the loop turns into tanh(g)
    bias, c_prev = torch.zeros(4 * hidden), torch.zeros(1, hidden)
    cell, squashed, state = (torch.empty(1, hidden) for _ in range(3))
    pointers = (t.data_ptr() for t in (gates, bias, c_prev, cell, squashed, state))
    loops.lstm_forward(*pointers, 1, hidden)
    exact = torch.tanh(grid.double())
    error = (gates[0, 2 * hidden : 3 * hidden].double() - exact).abs()
    bound = torch.where(exact.abs() < 1e-35, 3e-43, 3 * 2.0**-23 * exact.abs())  # 3 epsilons
    assert (error <= bound).all(), grid[(error - bound).argmax()]
    gates[0, 2] = float("nan")  # the g entry of a one-unit layer
    loops.lstm_forward(*(t.data_ptr() for t in (gates, bias, c_prev, cell, squashed, state)), 1, 1)
    assert gates[0, 2].isnan()
    assert state[0, 0].isnan()


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_the_kernels_weight_gradients_are_laid_out_as_their_parameters(cell: str) -> None:
    encoder = RecurrentEncoder(H_IN, H, cell=cell, kernel="rnnkit", num_layers=2)  # type: ignore[arg-type]
    x = torch.randn(3, 5, H_IN)
    output, _ = encoder(x)
    grads = torch.autograd.grad(output.pow(2).sum(), list(encoder.parameters()))
    for (name, parameter), grad in zip(encoder.named_parameters(), grads, strict=True):
        assert grad.shape == parameter.shape
        assert grad.is_contiguous(), name  # as torch's layers give them: grad.view(-1) works
