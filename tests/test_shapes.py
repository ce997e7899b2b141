"""The shape contract against torch's own recurrent layers.

The reference is always torch: the predicted shapes must be what ``nn.RNN/LSTM/GRU`` return,
and validation must accept exactly the inputs torch accepts.
"""

from __future__ import annotations

import doctest
import itertools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnkit import ShapeError
from rnnkit.shapes import RecurrentSpec, State, describe

CELLS: dict[str, Callable[..., nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
H_IN, HIDDEN, PROJ, N, L = 3, 5, 2, 2, 4

# oneDNN has no projected LSTM; torch says so once and falls back to its own kernel.
ONEDNN = "ignore:LSTM with projections is not supported with oneDNN:UserWarning"

GRID = [
    (cell, batch_first, bidirectional, num_layers, batched, proj_size)
    for cell, batch_first, bidirectional, num_layers, batched in itertools.product(
        CELLS, (True, False), (False, True), (1, 2, 3), (True, False)
    )
    for proj_size in ((0, PROJ) if cell == "lstm" else (0,))
]


def make_layer(spec: RecurrentSpec) -> nn.RNNBase:
    kwargs: dict[str, Any] = {"proj_size": spec.proj_size} if spec.proj_size else {}
    return CELLS[spec.cell](
        spec.input_size,
        spec.hidden_size,
        num_layers=spec.num_layers,
        bidirectional=spec.bidirectional,
        batch_first=spec.batch_first,
        **kwargs,
    )


def non_contiguous(shape: tuple[int, ...]) -> Tensor:
    """A random tensor of `shape` whose memory is laid out in reverse order."""
    reverse = tuple(range(len(shape) - 1, -1, -1))
    return torch.randn(*reversed(shape)).permute(reverse)


def make_state(
    spec: RecurrentSpec, shapes: dict[str, tuple[int, ...]], tensor: Callable[..., Tensor]
) -> State:
    h = tensor(shapes["h_0"])
    return (h, tensor(shapes["c_0"])) if spec.cell == "lstm" else h


def hidden(state: State) -> Tensor:
    return state[0] if isinstance(state, tuple) else state


def assert_outputs(
    spec: RecurrentSpec, shapes: dict[str, tuple[int, ...]], output: Tensor, state: State
) -> None:
    assert tuple(output.shape) == shapes["output"]
    assert tuple(hidden(state).shape) == shapes["h_n"]
    if spec.cell == "lstm":
        assert isinstance(state, tuple)
        assert tuple(state[1].shape) == shapes["c_n"]


@pytest.mark.filterwarnings(ONEDNN)
@pytest.mark.parametrize(
    ("cell", "batch_first", "bidirectional", "num_layers", "batched", "proj_size"), GRID
)
def test_predictions_match_torch_and_torch_inputs_validate(
    cell: str,
    batch_first: bool,
    bidirectional: bool,
    num_layers: int,
    batched: bool,
    proj_size: int,
) -> None:
    torch.manual_seed(0)
    layer = CELLS[cell](
        H_IN,
        HIDDEN,
        num_layers=num_layers,
        bidirectional=bidirectional,
        batch_first=batch_first,
        **({"proj_size": proj_size} if proj_size else {}),
    )
    spec = RecurrentSpec.from_module(layer)
    assert spec == RecurrentSpec(
        cell,  # type: ignore[arg-type]
        H_IN,
        HIDDEN,
        num_layers=num_layers,
        bidirectional=bidirectional,
        batch_first=batch_first,
        proj_size=proj_size,
    )
    shapes = spec.expected_shapes(N if batched else None, L)
    for tensor in (torch.randn, non_contiguous):
        x, state = tensor(shapes["x"]), make_state(spec, shapes, tensor)
        assert spec.validate(x, state, dtype=torch.float32, device="cpu") is batched
        assert spec.validate(x) is batched
        assert_outputs(spec, shapes, *layer(x, state))
        assert_outputs(spec, shapes, *layer(x))
    assert_describe_lines(spec, shapes, N if batched else None)
    assert_final_state_notes(spec, layer, shapes, N if batched else None)


def assert_describe_lines(
    spec: RecurrentSpec, shapes: dict[str, tuple[int, ...]], n: int | None
) -> None:
    lines = spec.describe(n, L).splitlines()
    for key, shape in shapes.items():
        numbers = "(" + ", ".join(map(str, shape)) + ")"
        assert sum(line.startswith(f"{key} ") and line.endswith(numbers) for line in lines) == 1


def assert_final_state_notes(
    spec: RecurrentSpec, layer: nn.RNNBase, shapes: dict[str, tuple[int, ...]], n: int | None
) -> None:
    """Each ``output[...] == h_n[...]`` line of describe() holds for torch's results."""
    output, state = layer(torch.randn(shapes["x"]))
    notes = re.findall(r"^(output\[.*?\]) == (h_n\[-\d\]):", spec.describe(n, L), re.M)
    assert len(notes) == spec.D
    for left, right in notes:
        namespace = {"output": output, "h_n": hidden(state)}
        assert torch.equal(eval(left, namespace), eval(right, namespace))


@pytest.mark.filterwarnings(ONEDNN)
@pytest.mark.parametrize(
    ("cell", "batch_first", "bidirectional", "proj_size"),
    [("rnn", True, False, 0), ("gru", False, True, 0), ("lstm", True, True, PROJ)],
)
def test_padded_batches_validate_and_pack(
    cell: str, batch_first: bool, bidirectional: bool, proj_size: int
) -> None:
    torch.manual_seed(0)
    spec = RecurrentSpec(cell, H_IN, HIDDEN, 2, bidirectional, batch_first, proj_size)  # type: ignore[arg-type]
    layer, shapes = make_layer(spec), spec.expected_shapes(3, L)
    x, state = torch.randn(shapes["x"]), make_state(spec, shapes, torch.randn)
    for lengths in (torch.tensor([L, 1, 3]), torch.tensor([2, L, L], dtype=torch.int32)):
        assert spec.validate(x, state, lengths) is True
        packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
        output, h_n = layer(packed, state)
        padded, _ = pad_packed_sequence(output, batch_first=batch_first, total_length=L)
        assert_outputs(spec, shapes, padded, h_n)


# -- validation accepts exactly what torch accepts -----------------------------------------


def mutate(shape: tuple[int, ...], kind: int, where: int) -> tuple[int, ...]:
    """One of the usual mistakes applied to `shape` (kind 0 leaves it alone)."""
    dims, where = list(shape), where % len(shape)
    if kind == 1:  # swap two dimensions
        dims[where], dims[-1] = dims[-1], dims[where]
    elif kind == 2:  # drop one
        del dims[where]
    elif kind == 3:  # add one of size 1
        dims.insert(where, 1)
    elif kind == 4:  # off by one
        dims[where] += 1
    return tuple(dims) if dims else (1,)


def torch_accepts(layer: nn.RNNBase, x: Tensor, state: object) -> bool:
    try:
        layer(x, state)
    except (RuntimeError, ValueError, IndexError, AttributeError, TypeError):
        return False
    return True


def we_accept(spec: RecurrentSpec, x: Tensor, state: object) -> bool:
    try:
        spec.validate(x, state, dtype=torch.float32)  # type: ignore[arg-type]
    except ShapeError:
        return False
    return True


@pytest.mark.filterwarnings(ONEDNN)
@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    setup=st.tuples(
        st.sampled_from([("rnn", 0), ("gru", 0), ("lstm", 0), ("lstm", PROJ)]),
        st.booleans(),
        st.booleans(),
        st.integers(1, 2),
        st.sampled_from([None, 1, 2, 3]),
        st.integers(1, 3),
    ),
    x_mistake=st.tuples(st.integers(0, 4), st.integers(0, 3), st.booleans()),
    state_mistake=st.tuples(st.integers(0, 6), st.integers(0, 4), st.integers(0, 3)),
)
def test_validation_accepts_exactly_what_torch_accepts(
    setup: tuple[tuple[str, int], bool, bool, int, int | None, int],
    x_mistake: tuple[int, int, bool],
    state_mistake: tuple[int, int, int],
) -> None:
    (cell, proj), batch_first, bidirectional, layers, n, steps = setup
    spec = RecurrentSpec(cell, H_IN, HIDDEN, layers, bidirectional, batch_first, proj)  # type: ignore[arg-type]
    shapes = spec.expected_shapes(n, steps)
    x = torch.zeros(mutate(shapes["x"], *x_mistake[:2]))
    x = x.double() if x_mistake[2] and x_mistake[0] == 0 else x
    state = mistaken_state(spec, shapes, *state_mistake)
    assert we_accept(spec, x, state) == torch_accepts(make_layer(spec), x, state)


def mistaken_state(
    spec: RecurrentSpec, shapes: dict[str, tuple[int, ...]], kind: int, mistake: int, where: int
) -> object:
    """None, the right state, a state with one shape mistake, or the wrong kind of state."""
    h = torch.zeros(mutate(shapes["h_0"], mistake, where))
    c = torch.zeros(shapes["c_0"]) if spec.cell == "lstm" else torch.zeros(shapes["h_0"])
    if kind == 0:
        return None
    if kind == 5:  # the other kind: a pair for an RNN/GRU, a bare tensor for an LSTM
        return h if spec.cell == "lstm" else (h, c)
    if kind == 6:
        return (h, c.double()) if spec.cell == "lstm" else h.double()
    return (h, c) if spec.cell == "lstm" else h


def test_empty_batches_are_rejected_although_torch_returns_empty_outputs() -> None:
    spec, layer = RecurrentSpec("rnn", H_IN, HIDDEN), nn.RNN(H_IN, HIDDEN, batch_first=True)
    x = torch.zeros(0, L, H_IN)
    assert layer(x)[0].shape == (0, L, HIDDEN)  # torch: fine, but the mean loss is NaN
    with pytest.raises(ShapeError, match=r"with N >= 1, but got \(0, 4, 3\)"):
        spec.validate(x)


# -- the spec itself -----------------------------------------------------------------------


def test_symbols_follow_torch_documentation() -> None:
    spec = RecurrentSpec("lstm", 28, 128, num_layers=2, bidirectional=True, proj_size=64)
    assert (spec.D, spec.output_size) == (2, 64)
    shapes = spec.expected_shapes(128, 28)
    assert shapes["h_0"] == (4, 128, 64)  # H_out = proj_size
    assert shapes["c_0"] == (4, 128, 128)  # H_cell = hidden_size
    assert shapes["output"] == (128, 28, 128)  # D·H_out
    assert list(RecurrentSpec("gru", 28, 16).expected_shapes(None, 5)) == [
        "x",
        "h_0",
        "output",
        "h_n",
    ]


def test_batch_first_is_the_default_unlike_torch() -> None:
    assert RecurrentSpec("rnn", 28, 128).batch_first is True
    assert nn.RNN(28, 128).batch_first is False
    assert RecurrentSpec.from_module(nn.RNN(28, 128)).batch_first is False


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"cell": "LSTM"},
            ValueError,
            "but got 'LSTM'. Hint: the names are lower case: cell='lstm'.",
        ),
        ({"cell": "tcn"}, ValueError, "but got 'tcn'. Hint: these are the recurrent cells"),
        ({"input_size": 0}, ValueError, "Expected `input_size` >= 1, but got 0."),
        ({"hidden_size": 12.0}, TypeError, "Expected `hidden_size` to be an int, but got 12.0."),
        ({"num_layers": True}, TypeError, "Expected `num_layers` to be an int, but got True."),
        ({"bidirectional": 1}, TypeError, "Expected `bidirectional` to be a bool, but got int 1."),
        (
            {"batch_first": "yes"},
            TypeError,
            "Expected `batch_first` to be a bool, but got str 'yes'.",
        ),
        ({"proj_size": -1}, ValueError, "Expected `proj_size` >= 0, but got -1."),
        (
            {"cell": "gru", "proj_size": 4},
            ValueError,
            "Expected proj_size = 0 for cell='gru', but got proj_size=4. Hint: projections",
        ),
        (
            {"cell": "lstm", "proj_size": 16},
            ValueError,
            "Expected `proj_size` < hidden_size = 16, but got 16. Hint:",
        ),
    ],
)
def test_construction_checks_name_the_argument(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    arguments: dict[str, Any] = {"cell": "rnn", "input_size": 28, "hidden_size": 16, **kwargs}
    with pytest.raises(error, match=re.escape(message)):
        RecurrentSpec(**arguments)


def test_torch_rejects_what_construction_rejects() -> None:
    with pytest.raises(ValueError, match="proj_size"):
        nn.LSTM(28, 16, proj_size=16)
    with pytest.raises(ValueError, match="proj_size"):
        nn.GRU(28, 16, proj_size=4)


@pytest.mark.parametrize(("n", "steps", "name"), [(0, 5, "N"), (3, 0, "L")])
def test_expected_shapes_need_positive_sizes(n: int, steps: int, name: str) -> None:
    with pytest.raises(ValueError, match=f"Expected `{name}` >= 1"):
        RecurrentSpec("rnn", 28, 16).expected_shapes(n, steps)


def test_from_module_accepts_relu_rnns_and_models_with_a_spec() -> None:
    spec = RecurrentSpec.from_module(nn.RNN(4, 8, nonlinearity="relu"))
    assert spec == RecurrentSpec("rnn", 4, 8, batch_first=False)

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.spec = RecurrentSpec("gru", 4, 8)

    model = Model()
    assert RecurrentSpec.from_module(model) is model.spec
    assert describe(model, 2, 3) == model.spec.describe(2, 3)


def test_from_module_rejects_other_modules() -> None:
    with pytest.raises(
        TypeError, match=r"`module` must be an nn\.RNN, nn\.LSTM or nn\.GRU, got Linear"
    ):
        RecurrentSpec.from_module(nn.Linear(4, 8))


def test_describe_matches_the_issue_example() -> None:
    spec = RecurrentSpec("rnn", 28, 128, bidirectional=True)
    assert "output  (N, L, D·H_out) = (128, 28, 256)" in spec.describe(128, 28).splitlines()
    assert describe(nn.RNN(28, 128, batch_first=True, bidirectional=True), 128, 28) == (
        spec.describe(128, 28)
    )


def test_describe_time_first_and_unbatched_layouts() -> None:
    time_first = RecurrentSpec("gru", 28, 128, batch_first=False).describe(64, 28)
    assert "x       (L, N, H_in) = (28, 64, 28)" in time_first
    assert "h_0     (D·num_layers, N, H_out) = (1, 64, 128)" in time_first
    unbatched = RecurrentSpec("lstm", 28, 128, proj_size=32).describe(None, 28)
    assert "N: none (unbatched)" in unbatched
    assert "c_n     (D·num_layers, H_cell) = (1, 128)" in unbatched
    assert "output  (L, D·H_out) = (28, 32)" in unbatched


# -- targets -------------------------------------------------------------------------------


def test_class_targets_accepted_where_cross_entropy_accepts() -> None:
    from rnnkit.shapes import validate_class_targets

    logits = torch.randn(4, 10)
    for y in (torch.tensor([0, 9, 3, 3]), torch.tensor([0, 9, 3, 3], dtype=torch.uint8)):
        validate_class_targets(y, batch_size=4, num_classes=10)
        assert torch.isfinite(nn.functional.cross_entropy(logits, y))
    validate_class_targets(torch.tensor([5, 123]), batch_size=2, num_classes=None)
    validate_class_targets(torch.tensor(7), batch_size=None, num_classes=10)
    assert torch.isfinite(nn.functional.cross_entropy(torch.randn(10), torch.tensor(7)))


def test_step_targets_accepted_where_mse_loss_accepts() -> None:
    from rnnkit.shapes import validate_step_targets

    prediction = torch.randn(3, 7, 2)
    for y in (
        torch.randn(3, 7, 2),
        torch.randn(3, 2, 7).transpose(1, 2),
        torch.ones(3, 7, 2).long(),
    ):
        validate_step_targets(y, batch_size=3, seq_len=7, size=2)
        assert torch.isfinite(nn.functional.mse_loss(prediction, y))
    validate_step_targets(torch.randn(7, 1), batch_size=None, seq_len=7, size=1)


# -- the docs page -------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "shapes.rst"


def test_docs_examples_print_what_the_code_prints() -> None:
    """docs/shapes.rst shows real output: its ``>>>`` examples run as doctests."""
    results = doctest.testfile(str(DOCS), module_relative=False, encoding="utf-8")
    assert results.attempted >= 5
    assert results.failed == 0
