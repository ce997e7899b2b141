"""Message formatting and mistake recognition for :mod:`rnnkit.shapes` (private).

Every :class:`~rnnkit.errors.ShapeError` rnnkit raises reads
"Expected `x` to have shape (N, L, H_in) = (?, ?, 28), but got (128, 28, 1). Hint: ...".
This module builds those messages: :class:`Layout` renders a layout in symbols and numbers,
:func:`shape_error` assembles the sentence, and the ``*_hint`` functions recognise common
mistakes from the sizes alone and say how to fix them (``None`` when nothing is recognisable).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from rnnkit._validate import fmt_shape
from rnnkit.errors import ShapeError

__all__ = [
    "Layout",
    "StateContext",
    "convert_expr",
    "feature_hint",
    "fmt_shape",
    "rank_hint",
    "received",
    "shape_error",
    "state_hint",
    "swap_hint",
]


class Layout(NamedTuple):
    """A tensor layout: its dimensions in symbols and in numbers (``None`` = unknown)."""

    symbols: tuple[str, ...]
    sizes: tuple[int | None, ...]

    def __str__(self) -> str:
        numbers = ("?" if size is None else str(size) for size in self.sizes)
        return f"{_tuple(self.symbols)} = {_tuple(numbers)}"

    def shape(self) -> tuple[int, ...]:
        """The sizes as a shape; every size must be known."""
        if any(size is None for size in self.sizes):
            raise ValueError(f"layout {self} has unknown sizes")
        return tuple(int(size) for size in self.sizes if size is not None)


def _tuple(items: Iterable[object]) -> str:
    parts = [str(item) for item in items]
    return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"


def received(value: object) -> str:
    """Describe what was passed where a tensor (or a pair of tensors) was expected."""
    if isinstance(value, Tensor):
        return f"a tensor of shape {fmt_shape(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    kind = type(value)
    return f"an object of type {kind.__module__}.{kind.__qualname__}"


def shape_error(name: str, expected: str, got: str, hint: str | None = None) -> ShapeError:
    """Build the one-sentence error: what `name` should be, what came, and how to fix it."""
    message = f"Expected `{name}` to {expected}, but got {got}."
    return ShapeError(f"{message} Hint: {hint}" if hint else message)


def convert_expr(name: str, dtype: torch.dtype) -> str:
    """The shortest expression converting `name` to `dtype`, e.g. ``x.float()``."""
    short = {torch.float32: "float", torch.float64: "double", torch.float16: "half"}
    method = short.get(dtype)
    return f"{name}.{method}()" if method else f"{name}.to({dtype})"


# -- the input x ---------------------------------------------------------------------------


def rank_hint(name: str, shape: Sequence[int], input_size: int, batch_first: bool) -> str:
    """Hint for an input with neither 2 (unbatched) nor 3 (batched) dimensions."""
    if len(shape) == 0:
        return _scalar_hint(name, input_size)
    if len(shape) == 1:
        return _vector_hint(name, shape[0], input_size, batch_first)
    return _extra_dim_hint(name, shape, input_size, batch_first)


def _scalar_hint(name: str, input_size: int) -> str:
    if input_size != 1:
        return f"{name} is a single number; each step needs H_in = {input_size} features."
    return f"{name} is a single number; as one step of one feature it is {name}.view(1, 1, 1)."


def _vector_hint(name: str, length: int, input_size: int, batch_first: bool) -> str:
    if input_size == 1:
        one = f"{name}.view(1, -1, 1)" if batch_first else f"{name}.view(-1, 1, 1)"
        return (
            f"{name} looks like one sequence of L = {length} numbers; add the feature "
            f"dimension with {name}.unsqueeze(-1) for (L, H_in) = ({length}, 1), "
            f"or make it a batch of one with {one}."
        )
    if length == input_size:
        return (
            f"{name} looks like a single step of H_in = {input_size} features; add the time "
            f"dimension with {name}.unsqueeze(0) for (L, H_in) = (1, {input_size})."
        )
    return f"a recurrent layer reads sequences of H_in = {input_size} features per step."


def _extra_dim_hint(name: str, shape: Sequence[int], input_size: int, batch_first: bool) -> str:
    if len(shape) == 4 and shape[1] == 1 and shape[3] == input_size:
        fix = f"{name}.squeeze(1)" if batch_first else f"{name}.squeeze(1).transpose(0, 1)"
        return (
            f"{name} looks like a batch of one-channel images (N, C, H, W); read each image "
            f"row by row, as L = {shape[2]} steps of H_in = {shape[3]} pixels, with {fix}."
        )
    singles = [dim for dim, size in enumerate(shape[:-1]) if size == 1]
    if len(shape) == 4 and singles and shape[-1] == input_size:
        return (
            f"{name} has an extra dimension of size 1; remove it with {name}.squeeze({singles[0]})."
        )
    return (
        f"{name} has {len(shape)} dimensions; a recurrent layer takes 3 (batched) or "
        f"2 (unbatched): reshape it so that the features come last."
    )


def feature_hint(name: str, shape: Sequence[int], input_size: int, batch_first: bool) -> str:
    """Hint for a 2-D or 3-D input whose last dimension is not ``H_in``."""
    recognised = (
        _feature_hint_3d(name, shape, input_size, batch_first)
        if len(shape) == 3
        else _feature_hint_2d(name, shape, input_size, batch_first)
    )
    if recognised:
        return recognised
    return (
        f"{name} has {shape[-1]} features per step, but the layer was built with "
        f"input_size={input_size}; fix {name} or build the layer with input_size={shape[-1]}."
    )


def _feature_hint_3d(
    name: str, shape: Sequence[int], input_size: int, batch_first: bool
) -> str | None:
    if shape[1] == input_size and batch_first:
        # aeon's and sktime's collections are (N, C, L): name the adapter that reads them
        return _swapped(name, "(N, H_in, L)", "transpose(1, 2)") + (
            " Arrays from aeon or sktime are (N, C, L): "
            "rnnkit.data.from_arrays(x, layout='NCL') reads them."
        )
    if shape[1] == input_size:
        return (
            f"{name} looks like (N, H_in, L), channels first as a Conv1d makes it; "
            f"a time-first layer takes (L, N, H_in): use {name}.permute(2, 0, 1)."
        )
    if shape[0] == input_size and not batch_first:
        return _swapped(name, "(H_in, N, L)", "transpose(0, 2)")
    if shape[0] == input_size:
        return (
            f"{name} has H_in = {input_size} in dimension 0; the features go last: "
            f"use {name}.movedim(0, -1)."
        )
    return None


def _swapped(name: str, layout: str, fix: str) -> str:
    return f"{name} looks like {layout}: features and time are swapped; use {name}.{fix}."


def _feature_hint_2d(
    name: str, shape: Sequence[int], input_size: int, batch_first: bool
) -> str | None:
    if shape[0] == input_size:
        return _swapped(name, "(H_in, L)", "transpose(0, 1)")
    if input_size == 1:
        layout = "(N, L)" if batch_first else "(L, N)"
        full = "(N, L, H_in)" if batch_first else "(L, N, H_in)"
        return (
            f"{name} looks like a batch of sequences of numbers, {layout} = {fmt_shape(shape)}; "
            f"add the feature dimension with {name}.unsqueeze(-1) for "
            f"{full} = {fmt_shape((*shape, 1))}."
        )
    return None


def swap_hint(name: str, source: str, n: int, batch_first: bool) -> str:
    """Hint for a batched input whose batch and time dimensions are swapped."""
    if batch_first:
        return (
            f"{source} says N = {n}, which is {name}'s dimension 0: {name} looks like "
            f"(L, N, H_in), time first, but the layer has batch_first=True; use "
            f"{name}.transpose(0, 1), or build the layer with batch_first=False."
        )
    return (
        f"{source} says N = {n}, which is {name}'s dimension 1: {name} looks like "
        f"(N, L, H_in), batch first, but the layer has batch_first=False; use "
        f"{name}.transpose(0, 1), or build the layer with batch_first=True."
    )


# -- the states h_0 and c_0 ----------------------------------------------------------------


class StateContext(NamedTuple):
    """What a state hint needs to know about the layer and the input."""

    name: str
    kind: str  # "h" or "c"
    num_layers: int
    bidirectional: bool
    hidden_size: int
    proj_size: int
    batch_first: bool
    x_shape: tuple[int, ...]


def state_hint(ctx: StateContext, got: Sequence[int], expected: Sequence[int]) -> str | None:
    """Hint for a state tensor whose shape differs from the expected one."""
    got, expected = tuple(got), tuple(expected)
    if len(expected) == 3:
        return _batched_state_hint(ctx, got, expected)
    return _unbatched_state_hint(ctx, got, expected)


def _batched_state_hint(
    ctx: StateContext, got: tuple[int, ...], expected: tuple[int, ...]
) -> str | None:
    layers, n, size = expected
    if len(got) == 2:
        return _missing_dim_hint(ctx, got, expected)
    if len(got) != 3:
        return None
    if got[1:] == (n, size):
        return _layer_count_hint(ctx, got[0], expected)
    if got == (n, layers, size):
        return _batch_first_state_hint(ctx)
    if (got[0], got[2]) == (layers, size):
        return _state_batch_hint(ctx, got[1], expected)
    if got[:2] == (layers, n):
        return _state_size_hint(ctx, got[2])
    return None


def _unbatched_state_hint(
    ctx: StateContext, got: tuple[int, ...], expected: tuple[int, ...]
) -> str | None:
    layers, size = expected
    if len(got) == 3 and (got[0], got[2]) == (layers, size):
        return _batched_state_for_unbatched_x(ctx, got[1])
    if len(got) == 2 and got[0] == layers:
        return _state_size_hint(ctx, got[1])
    if len(got) == 2 and got[1] == size:
        return _layer_count_hint(ctx, got[0], expected)
    return None


def _symbol(ctx: StateContext) -> str:
    return "H_out" if ctx.kind == "h" else "H_cell"


def _layer_count_hint(ctx: StateContext, rows: int, expected: tuple[int, ...]) -> str:
    name, layers, total = ctx.name, ctx.num_layers, expected[0]
    if ctx.bidirectional and rows == layers:
        zeros = f"torch.zeros{fmt_shape(expected)}"
        return (
            f"the layer is bidirectional, so {name} needs one row per layer and direction: "
            f"D·num_layers = 2·{layers} = {total}, not num_layers = {layers}; e.g. {zeros}."
        )
    if not ctx.bidirectional and rows == 2 * layers:
        return (
            f"{name} has 2·num_layers = {rows} rows, but the layer is not bidirectional "
            f"(D = 1): it needs num_layers = {layers} rows."
        )
    d = 2 if ctx.bidirectional else 1
    return f"{name} needs one row per layer and direction: D·num_layers = {d}·{layers} = {total}."


def _missing_dim_hint(
    ctx: StateContext, got: tuple[int, ...], expected: tuple[int, ...]
) -> str | None:
    layers, n, size = expected
    name = ctx.name
    if got == (n, size) and layers == 1:
        return f"{name} lacks the layer dimension; add it with {name}.unsqueeze(0)."
    if got == (n, size):
        return (
            f"{name} lacks the layer dimension; it needs D·num_layers = {layers} rows, "
            f"e.g. {name}.unsqueeze(0).repeat({layers}, 1, 1)."
        )
    if got == (layers, size) and n == 1:
        return f"{name} lacks the batch dimension; add it with {name}.unsqueeze(1)."
    if got == (layers, size):
        return (
            f"{name} lacks the batch dimension; to start all N = {n} sequences from it, "
            f"use {name}.unsqueeze(1).expand(-1, {n}, -1).contiguous()."
        )
    return None


def _batch_first_state_hint(ctx: StateContext) -> str:
    return (
        f"{ctx.name} is batch first, (N, D·num_layers, {_symbol(ctx)}); states are "
        f"(D·num_layers, N, {_symbol(ctx)}) even when batch_first=True: use "
        f"{ctx.name}.transpose(0, 1).contiguous()."
    )


def _state_batch_hint(ctx: StateContext, got_n: int, expected: tuple[int, ...]) -> str:
    batch_dim, time_dim = (0, 1) if ctx.batch_first else (1, 0)
    if got_n == ctx.x_shape[time_dim]:
        return (
            f"{ctx.name} has N = {got_n}, the size of x's dimension {time_dim}, which is L for "
            f"this layer (batch_first={ctx.batch_first}): is x's layout swapped? "
            f"Use x.transpose(0, 1)."
        )
    return (
        f"{ctx.name} was made for N = {got_n} sequences but x holds {expected[1]} (the last "
        f"batch of an epoch is often smaller); size it from x: torch.zeros({expected[0]}, "
        f"x.size({batch_dim}), {expected[2]})."
    )


def _state_size_hint(ctx: StateContext, got_size: int) -> str:
    name, hidden, proj = ctx.name, ctx.hidden_size, ctx.proj_size
    if ctx.kind == "h" and proj and got_size == hidden:
        return (
            f"with proj_size = {proj}, h has H_out = proj_size = {proj}; "
            f"only c uses hidden_size = {hidden}."
        )
    if ctx.kind == "c" and proj and got_size == proj:
        return f"c uses H_cell = hidden_size = {hidden}, even with proj_size = {proj}."
    source = "proj_size" if ctx.kind == "h" and proj else "hidden_size"
    size = proj if source == "proj_size" else hidden
    return f"the last dimension of {name} is {_symbol(ctx)} = {source} = {size}."


def _batched_state_for_unbatched_x(ctx: StateContext, got_n: int) -> str:
    batch_dim, time_dim = (0, 1) if ctx.batch_first else (1, 0)
    if got_n != 1 and ctx.x_shape[0] == got_n:
        return (
            f"{ctx.name} is batched with N = {got_n}, and x, {fmt_shape(ctx.x_shape)}, "
            f"looks like one step of that batch; add the time dimension with "
            f"x.unsqueeze({time_dim})."
        )
    if got_n == 1:
        return (
            f"{ctx.name} is batched (N = 1) but x is unbatched (L, H_in); add the batch "
            f"dimension to x with x.unsqueeze({batch_dim}), or drop it from {ctx.name} "
            f"with {ctx.name}.squeeze(1)."
        )
    return (
        f"{ctx.name} holds the states of N = {got_n} sequences but x is one unbatched "
        f"sequence (L, H_in); pass one sequence's state, {ctx.name}[:, k], or a batch of "
        f"{got_n} sequences as x."
    )
