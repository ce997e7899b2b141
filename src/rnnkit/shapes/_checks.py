"""The tensor checks behind :class:`rnnkit.shapes.RecurrentSpec` (private).

Each check compares one argument with the layout the spec predicts and raises
:class:`~rnnkit.errors.ShapeError` (built by :mod:`rnnkit.shapes._hints`) on the first
difference. The checks only read shapes, dtypes and devices (and, for ``lengths``, the CPU
values), so they never run a recurrent layer. Under :func:`torch.compile`,
:func:`torch.export.export` or :func:`torch.jit.trace` the size checks still run, but the check
of the ``lengths`` values is skipped: the values are symbolic there, and reading them would
split the graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, NoReturn, cast

import torch
from torch import Tensor

from rnnkit.errors import ShapeError
from rnnkit.shapes._hints import (
    Layout,
    StateContext,
    convert_expr,
    feature_hint,
    fmt_shape,
    rank_hint,
    received,
    shape_error,
    state_hint,
    swap_hint,
)

if TYPE_CHECKING:
    from rnnkit.shapes import RecurrentSpec, State

__all__ = [
    "Implied",
    "batch_time_dims",
    "check_device",
    "check_dtype",
    "check_input",
    "check_lengths",
    "check_state",
    "cudnn_needs_contiguous",
    "implied_batch",
    "input_layout",
    "same_device",
    "state_layout",
    "tracing",
]


class Implied(NamedTuple):
    """A batch size another argument implies, and that argument's name."""

    n: int
    source: str


def batch_time_dims(batch_first: bool) -> tuple[int, int]:
    """The (batch, time) dimensions of a batched input."""
    return (0, 1) if batch_first else (1, 0)


def same_device(actual: torch.device, wanted: torch.device) -> bool:
    """Whether `actual` is `wanted` (``cuda`` without an index matches every ``cuda:k``)."""
    if actual.type != wanted.type:
        return False
    return len({actual.index, wanted.index} - {None}) <= 1


def check_dtype(
    value: Tensor,
    name: str,
    layout: Layout,
    dtype: torch.dtype | None,
    why: str = "",
    *,
    of_input: bool = False,
) -> None:
    """Reject integer (or boolean) tensors, and any dtype other than `dtype` when given.

    `why` says where `dtype` comes from; `of_input` adds the hints that fit a layer input.
    """
    if _is_real_or_complex(value) if dtype is None else value.dtype == dtype:
        return
    wanted = "a floating-point tensor" if dtype is None else f"a {dtype} tensor{why}"
    target = dtype or torch.float32
    hint = f"convert it with {convert_expr(name, target)}"
    if value.dtype == torch.uint8:
        hint += f", and scale 0..255 pixels with {convert_expr(name, target)} / 255"
    elif value.dtype == torch.float64 and of_input:
        hint += f" (NumPy arrays are float64 by default), or the model with model.to({value.dtype})"
    got = f"a {value.dtype} tensor of shape {fmt_shape(value.shape)}"
    raise shape_error(name, f"be {wanted} of shape {layout}", got, hint + ".")


def _is_real_or_complex(value: Tensor) -> bool:
    return value.is_floating_point() or value.is_complex()


def check_device(
    value: Tensor, name: str, layout: Layout, device: torch.device | str | None, why: str = ""
) -> None:
    """Reject a tensor that is not on `device` (when given)."""
    if device is None or same_device(value.device, torch.device(device)):
        return
    wanted = torch.device(device)
    got = f"a tensor on {value.device} of shape {fmt_shape(value.shape)}"
    hint = f"move it with {name}.to({str(wanted)!r})."
    raise shape_error(name, f"be on {wanted}{why} with shape {layout}", got, hint)


# -- x -------------------------------------------------------------------------------------


def input_layout(
    spec: RecurrentSpec, batched: bool, n: int | None = None, steps: int | None = None
) -> Layout:
    """The layout of `x`; N and L are unknown unless given."""
    if not batched:
        return Layout(("L", "H_in"), (steps, spec.input_size))
    if spec.batch_first:
        return Layout(("N", "L", "H_in"), (n, steps, spec.input_size))
    return Layout(("L", "N", "H_in"), (steps, n, spec.input_size))


def check_input(
    spec: RecurrentSpec,
    x: object,
    name: str,
    dtype: torch.dtype | None,
    device: torch.device | str | None,
    implied: Implied | None = None,
) -> bool:
    """Check the input `x`; return whether it is batched."""
    if not isinstance(x, Tensor):
        layout = input_layout(spec, True)
        hint = f"convert it with torch.as_tensor({name}, dtype=torch.float32)."
        raise shape_error(name, f"be a tensor of shape {layout}", received(x), hint)
    _check_rank(spec, x, name)
    batched = x.dim() == 3
    layout = input_layout(spec, batched)
    if x.shape[-1] != spec.input_size:
        hint = feature_hint(name, x.shape, spec.input_size, spec.batch_first)
        raise shape_error(name, f"have shape {layout}", fmt_shape(x.shape), hint)
    _check_implied(spec, x, name, implied)
    _check_nonempty(spec, x, name, layout)
    check_dtype(x, name, layout, dtype, " (the layer's dtype)", of_input=True)
    check_device(x, name, layout, device, " (the layer's device)")
    return batched


def _check_rank(spec: RecurrentSpec, x: Tensor, name: str) -> None:
    if x.dim() in (2, 3):
        return
    expected = f"have shape {input_layout(spec, True)} or, unbatched, {input_layout(spec, False)}"
    hint = rank_hint(name, x.shape, spec.input_size, spec.batch_first)
    raise shape_error(name, expected, fmt_shape(x.shape), hint)


def _check_implied(spec: RecurrentSpec, x: Tensor, name: str, implied: Implied | None) -> None:
    if implied is None or x.dim() != 3:
        return
    batch_dim, time_dim = batch_time_dims(spec.batch_first)
    if x.shape[batch_dim] != implied.n and x.shape[time_dim] == implied.n:
        layout = input_layout(spec, True, implied.n)
        hint = swap_hint(name, implied.source, implied.n, spec.batch_first)
        raise shape_error(name, f"have shape {layout}", fmt_shape(x.shape), hint)


def _check_nonempty(spec: RecurrentSpec, x: Tensor, name: str, layout: Layout) -> None:
    batch_dim, time_dim = batch_time_dims(spec.batch_first) if x.dim() == 3 else (None, 0)
    if batch_dim is not None and x.shape[batch_dim] == 0:
        hint = "the batch is empty (its mean loss would be NaN); skip empty batches."
        raise shape_error(name, f"have shape {layout} with N >= 1", fmt_shape(x.shape), hint)
    if x.shape[time_dim] == 0:
        hint = "every sequence needs at least one step; check the slicing that made it."
        raise shape_error(name, f"have shape {layout} with L >= 1", fmt_shape(x.shape), hint)


def implied_batch(spec: RecurrentSpec, state: object, lengths: object) -> Implied | None:
    """The batch size a well-formed batched `h_0` or 1-D `lengths` implies, if any."""
    h = state[0] if isinstance(state, (tuple, list)) and state else state
    layers, size = spec.D * spec.num_layers, spec.output_size
    if isinstance(h, Tensor) and h.dim() == 3 and (h.shape[0], h.shape[2]) == (layers, size):
        return Implied(h.shape[1], "h_0")
    if isinstance(lengths, Tensor) and lengths.dim() == 1:
        return Implied(lengths.shape[0], "lengths")
    return None


# -- h_0 and c_0 ---------------------------------------------------------------------------


def state_layout(spec: RecurrentSpec, kind: str, n: int | None) -> Layout:
    """The layout of ``h`` (kind ``"h"``) or ``c`` (kind ``"c"``); `n` None = unbatched."""
    size, symbol = (spec.output_size, "H_out") if kind == "h" else (spec.hidden_size, "H_cell")
    layers = spec.D * spec.num_layers
    if n is None:
        return Layout(("D·num_layers", symbol), (layers, size))
    return Layout(("D·num_layers", "N", symbol), (layers, n, size))


def check_state(
    spec: RecurrentSpec,
    state: State | None,
    x: Tensor,
    name: str,
    dtype: torch.dtype | None,
    device: torch.device | str | None,
    *,
    packed: bool = False,
) -> None:
    """Check the initial state against `x` (assumed valid).

    `packed` says the input will be packed with ``enforce_sorted=False``, which copies the
    state into a contiguous tensor before cuDNN sees it.
    """
    if state is None:
        return
    parts = _state_parts(spec, state, x, name)
    for value, part_name, kind in parts:
        _check_state_tensor(spec, value, x, part_name, kind, dtype, device)
    for value, part_name, kind in parts:
        if not packed:
            _check_contiguous(spec, value, x, part_name, kind)


def _state_parts(
    spec: RecurrentSpec, state: object, x: Tensor, name: str
) -> list[tuple[object, str, str]]:
    """The state's tensors (after checking its kind), with their names and kinds."""
    n = x.shape[batch_time_dims(spec.batch_first)[0]] if x.dim() == 3 else None
    if spec.cell != "lstm":
        _check_single(spec, state, name, n)
        return [(state, name, "h")]
    _check_pair(spec, state, name, n)
    h, c = cast("tuple[object, object]", state)
    names = ("h_0", "c_0") if name == "h_0" else (f"{name}[0]", f"{name}[1]")
    return [(h, names[0], "h"), (c, names[1], "c")]


def cudnn_needs_contiguous(value: Tensor) -> bool:
    """Whether torch will hand `value` to cuDNN, which rejects non-contiguous states."""
    return value.device.type == "cuda" and bool(torch.backends.cudnn.enabled)


def _check_contiguous(spec: RecurrentSpec, value: object, x: Tensor, name: str, kind: str) -> None:
    if not isinstance(value, Tensor) or value.is_contiguous() or not cudnn_needs_contiguous(value):
        return
    n = x.shape[batch_time_dims(spec.batch_first)[0]] if x.dim() == 3 else None
    expected = f"be a contiguous tensor of shape {state_layout(spec, kind, n)} (cuDNN needs it)"
    got = f"a non-contiguous tensor of shape {fmt_shape(value.shape)}"
    hint = f"a transposed or sliced state is a strided view; pass {name}.contiguous()."
    raise shape_error(name, expected, got, hint)


def _check_pair(spec: RecurrentSpec, state: object, name: str, n: int | None) -> None:
    h_layout, c_layout = state_layout(spec, "h", n), state_layout(spec, "c", n)
    expected = f"be a tuple (h_0, c_0) of shapes {h_layout} and {c_layout}"
    if isinstance(state, Tensor):
        c_zeros = f"torch.zeros{fmt_shape(c_layout.shape())}"
        hint = f"an LSTM carries two states, h and c; pass ({name}, c_0), e.g. c_0 = {c_zeros}."
        raise shape_error(name, expected, received(state), hint)
    if isinstance(state, list) and len(state) == 2:
        # torch's LSTM and rnnkit's kernels read the pair as a tuple; one type keeps every
        # path (kernels, unbatched input, streaming) alike
        hint = f"pass the pair as a tuple, e.g. tuple({name})."
        raise shape_error(name, expected, received(state), hint)
    if not isinstance(state, tuple) or len(state) != 2:
        hint = "pass exactly two tensors, (h_0, c_0)."
        raise shape_error(name, expected, received(state), hint)


def _check_single(spec: RecurrentSpec, state: object, name: str, n: int | None) -> None:
    if isinstance(state, (tuple, list)):
        layout = state_layout(spec, "h", n)
        hint = (
            f"only an LSTM takes a pair (h_0, c_0); a {spec.cell.upper()} has one state: "
            "pass h_0 alone."
        )
        raise shape_error(name, f"be a tensor of shape {layout}", received(state), hint)


def _check_state_tensor(
    spec: RecurrentSpec,
    value: object,
    x: Tensor,
    name: str,
    kind: str,
    dtype: torch.dtype | None,
    device: torch.device | str | None,
) -> None:
    n = x.shape[batch_time_dims(spec.batch_first)[0]] if x.dim() == 3 else None
    layout = state_layout(spec, kind, n)
    if not isinstance(value, Tensor):
        raise shape_error(name, f"be a tensor of shape {layout}", received(value))
    if tuple(value.shape) != layout.shape():
        hint = state_hint(_context(spec, name, kind, x), value.shape, layout.shape())
        raise shape_error(name, f"have shape {layout}", fmt_shape(value.shape), hint)
    check_dtype(value, name, layout, dtype or x.dtype, " (like x)")
    check_device(value, name, layout, device if device is not None else x.device, " (like x)")


def _context(spec: RecurrentSpec, name: str, kind: str, x: Tensor) -> StateContext:
    return StateContext(
        name=name,
        kind=kind,
        num_layers=spec.num_layers,
        bidirectional=spec.bidirectional,
        hidden_size=spec.hidden_size,
        proj_size=spec.proj_size,
        batch_first=spec.batch_first,
        x_shape=tuple(x.shape),
    )


# -- lengths -------------------------------------------------------------------------------


def check_lengths(spec: RecurrentSpec, lengths: object, x: Tensor, name: str) -> None:
    """Check the per-sequence lengths of a padded batch `x` (assumed valid)."""
    if lengths is None:
        return
    if x.dim() != 3:
        _reject_unbatched_lengths(spec, lengths, x, name)
    batch_dim, time_dim = batch_time_dims(spec.batch_first)
    n, steps = x.shape[batch_dim], x.shape[time_dim]
    expected = _LengthsExpectation(n, steps)
    if not isinstance(lengths, Tensor):
        hint = f"convert it with torch.tensor({name})."
        raise shape_error(name, str(expected), received(lengths), hint)
    _check_lengths_kind(lengths, name, expected, (n, steps))
    _check_lengths_count(spec, lengths, x, name, expected)
    if not tracing():  # traced values are symbolic: reading them would end the graph
        _check_lengths_values(lengths, name, expected, steps, time_dim)


def tracing() -> bool:
    """Whether torch is compiling, exporting or tracing the call rather than running it.

    Checks that read a tensor's values (not only its shape) are skipped then; in eager mode
    they always run.
    """
    return torch.compiler.is_compiling() or torch.jit.is_tracing()  # type: ignore[attr-defined,no-untyped-call]


class _LengthsExpectation:
    """What `lengths` should be, as a sentence written only when an error is raised.

    Writing it eagerly would format sizes that are symbolic under :func:`torch.compile`.
    """

    def __init__(self, n: int, steps: int) -> None:
        self.n, self.steps = n, steps

    def __str__(self) -> str:
        return (
            f"be a 1-D integer CPU tensor of shape (N,) = ({self.n},) with values in "
            f"1..L = 1..{self.steps}"
        )


def _reject_unbatched_lengths(
    spec: RecurrentSpec, lengths: object, x: Tensor, name: str
) -> NoReturn:
    layout = Layout(("L", "H_in"), tuple(x.shape))
    batch_dim = batch_time_dims(spec.batch_first)[0]
    hint = (
        f"an unbatched x is one sequence of L = {x.shape[0]} steps; slice it (x[:length]) "
        f"instead, or add the batch dimension with x.unsqueeze({batch_dim})."
    )
    expected = f"be None for an unbatched `x` of shape {layout}"
    raise shape_error(name, expected, received(lengths), hint)


def _check_lengths_kind(
    lengths: Tensor, name: str, expected: _LengthsExpectation, batch: tuple[int, int]
) -> None:
    if lengths.dtype == torch.bool:
        hint = (
            f"{name} holds booleans; pass the number of real steps per sequence, "
            "e.g. mask.sum(dim=1)."
        )
        raise _lengths_error(lengths, name, expected, f"a {lengths.dtype} tensor", hint)
    if lengths.is_floating_point() or lengths.is_complex():
        hint = f"lengths count time steps; convert them with {name}.long()."
        raise _lengths_error(lengths, name, expected, f"a {lengths.dtype} tensor", hint)
    if lengths.device.type != "cpu":
        hint = (
            "pack_padded_sequence needs the lengths on the CPU, even when x is on a GPU: "
            f"use {name}.cpu()."
        )
        raise _lengths_error(lengths, name, expected, f"a tensor on {lengths.device}", hint)
    if lengths.dim() != 1:
        hint = _rank_hint(lengths, name, batch)
        raise _lengths_error(lengths, name, expected, "a tensor", hint)


def _lengths_error(
    lengths: Tensor, name: str, expected: _LengthsExpectation, what: str, hint: str
) -> ShapeError:
    return shape_error(name, str(expected), f"{what} of shape {fmt_shape(lengths.shape)}", hint)


def _rank_hint(lengths: Tensor, name: str, batch: tuple[int, int]) -> str:
    if tuple(lengths.shape) == batch:
        return f"{name} looks like a (N, L) mask; pass the steps per sequence, {name}.sum(dim=1)."
    if lengths.numel() == batch[0]:
        return f"flatten it with {name}.reshape(-1)."
    return f"{name} holds one length per sequence of x, N = {batch[0]} in all."


def _check_lengths_count(
    spec: RecurrentSpec, lengths: Tensor, x: Tensor, name: str, expected: _LengthsExpectation
) -> None:
    batch_dim, time_dim = batch_time_dims(spec.batch_first)
    if lengths.shape[0] == x.shape[batch_dim]:
        return
    got = f"a tensor of shape {fmt_shape(lengths.shape)}"
    if lengths.shape[0] == x.shape[time_dim]:
        hint = swap_hint("x", name, lengths.shape[0], spec.batch_first)
    else:
        hint = (
            f"{name} needs one entry per sequence of x, which holds "
            f"N = {x.shape[batch_dim]} (dimension {batch_dim})."
        )
    raise shape_error(name, str(expected), got, hint)


def _check_lengths_values(
    lengths: Tensor, name: str, expected: _LengthsExpectation, steps: int, time_dim: int
) -> None:
    bad = ((lengths < 1) | (lengths > steps)).nonzero()
    if bad.numel() == 0:
        return
    index = int(bad[0, 0])
    value = int(lengths[index])
    got = f"{name}[{index}] = {value} (shape {fmt_shape(lengths.shape)})"
    if value < 1:
        hint = "every sequence needs at least one step; drop empty sequences before batching."
    else:
        hint = (
            f"no sequence can be longer than x's time dimension (dimension {time_dim}, "
            f"L = {steps}); were the lengths measured before truncating?"
        )
    raise shape_error(name, str(expected), got, hint)
