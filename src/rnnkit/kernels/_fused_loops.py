"""The GRU and LSTM kernels' step loops with each step's elementwise work compiled.

Each loop here does, per step, the step's matrix product (a torch call writing into a
preallocated buffer) and one call of a compiled loop from :mod:`rnnkit.kernels._fused` for all
of the step's elementwise work, including every addition a product with a bias term would
otherwise make (``torch.addmm`` into another tensor first copies its bias there). They leave
the same buffers, in the same layouts, as the kernels' torch-operation steps, which they
replace where the compiled loops are available; the LSTM's keep torch's gate order, and its
whole-recurrence call also leaves an ``(L, N, H + H_in)`` buffer of each step's
``[h_{t-1}, x_t]``. Every pointer they pass is to a tensor whose rows are contiguous and whose
dtype is the loops': the kernels allocate their buffers so, and
:func:`usable` and :func:`_rows` check the rest.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from rnnkit.kernels import _fused
from rnnkit.kernels._common import order

__all__ = [
    "gru_backward",
    "gru_forward",
    "lstm_backward",
    "lstm_forward",
    "pooled",
    "usable",
]


def usable(
    x: Tensor,
    starts: Sequence[Tensor] = (),
    weights: Sequence[Tensor] = (),
    gates: int = 0,
) -> _fused.Steps | None:
    """The compiled loops for ``x``'s dtype, if they exist and every tensor can be passed.

    The loops read ``starts`` (each ``(N, H)``) and the biases as raw memory, so each must
    have ``x``'s dtype and device and exactly the shape the loops assume; ``weights`` are
    ``(W_ih, W_hh, *biases)`` of a cell with ``gates`` gates, each ``(gates·H, H_in)``,
    ``(gates·H, H)`` and ``(gates·H,)``. Otherwise the torch-operation steps run, which raise
    (or cope) as torch's layer does. Never while ``torch.compile`` traces (it cannot trace a
    call through raw pointers; the torch-operation steps trace, as the plain RNN kernel's do).
    """
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return None
    if any(not s.is_contiguous() for s in starts) or not _fit(x, starts, weights, gates):
        return None
    return _fused.steps(x.dtype)


def _fit(x: Tensor, starts: Sequence[Tensor], weights: Sequence[Tensor], gates: int) -> bool:
    """Whether every start and weight has ``x``'s dtype and device and its expected shape."""
    hidden = weights[1].shape[-1] if weights else starts[0].shape[-1] if starts else 0
    shapes: list[tuple[int, ...]] = [(x.shape[1], hidden)] * len(starts)
    if weights:
        rows = gates * hidden
        shapes += [(rows, x.shape[-1]), (rows, hidden)] + [(rows,)] * (len(weights) - 2)
    tensors = [*starts, *weights]
    return all(
        t.dtype == x.dtype and t.device == x.device and tuple(t.shape) == shape
        for t, shape in zip(tensors, shapes, strict=True)
    )


def _at(tensor: Tensor) -> tuple[int, int]:
    """The data pointer and the byte stride between steps of a time-major buffer."""
    return tensor.data_ptr(), tensor.stride(0) * tensor.element_size()


def _rows(grad_states: Tensor | None, like: Tensor) -> tuple[Tensor, int, int, int]:
    """An incoming ``(L, N, H)`` gradient with contiguous rows, its pointer and its strides.

    Returns ``(tensor, pointer, step stride in bytes, row stride in elements)``; a gradient
    whose rows are not contiguous (an expanded one, say) is copied once, and a missing one
    (the outputs were not used) is one row of zeros that every step and row reads.
    """
    if grad_states is None:
        zeros = like.new_zeros(like.shape[-1])
        return zeros, zeros.data_ptr(), 0, 0
    if grad_states.stride(2) != 1:
        grad_states = grad_states.contiguous()
    pointer, step = _at(grad_states)
    return grad_states, pointer, step, grad_states.stride(1)


_SCRATCH = threading.local()


def _workspace(states: Tensor, width: int) -> Tensor:
    """An ``(L, N, width)`` buffer for the gate gradients, reused by this thread's next call.

    The backward passes read it only until they return (its products are new tensors), so one
    buffer per thread serves every call of the same shape; reusing it spares the operating
    system mapping (and zeroing) fresh memory for megabytes of gradients on every call.
    """
    shape = (*states.shape[:2], width)
    held: Tensor | None = getattr(_SCRATCH, "grads", None)
    if held is None or held.shape != shape or held.dtype != states.dtype:
        held = states.new_empty(shape)
        _SCRATCH.grads = held
    return held


def _saved_buffer(like: Tensor, shape: tuple[int, ...], role: str) -> Tensor:
    """A buffer for a forward pass to save for backward: a free one of this thread's, or new.

    A buffer is free when nothing but the pool holds it or its memory (the graph that saved it
    is gone). Only buffers that never leave the kernel (never returned, never viewed by a
    caller) come from here; reusing them spares the operating system mapping fresh memory for
    every call. The pool keeps buffers of the few shapes per role used last (a padded dataset's
    batches come in many lengths), within a byte budget, each at most :data:`_POOLED` times. While
    saved-tensor hooks are active (they may keep the memory under another tensor), under
    :func:`torch.inference_mode` (its tensors may never be written outside it), or where torch
    cannot count a buffer's owners, every call gets a new buffer.
    """
    if not _poolable():
        return like.new_empty(shape)
    pool: dict[str, OrderedDict[tuple[tuple[int, ...], torch.dtype], list[Tensor]]]
    pool = _SCRATCH.__dict__.setdefault("pool", {})
    shapes = pool.setdefault(role, OrderedDict())
    key = (shape, like.dtype)
    held = shapes.pop(key, [])
    shapes[key] = held  # the most recently used last
    _evict(shapes)
    for buffer in held:
        if _unshared(buffer):
            return buffer
    buffer = like.new_empty(shape)
    if len(held) < _POOLED:
        held.append(buffer)
    return buffer


def _evict(shapes: OrderedDict[Any, list[Tensor]]) -> None:
    """Drop the least recently used shapes beyond :data:`_SHAPES` or :data:`_BYTES`.

    The most recent shape stays whatever its size. A dropped buffer that a graph still saved
    stays with that graph; a free one is released.
    """
    while len(shapes) > 1:
        held = sum(b.nbytes for buffers in shapes.values() for b in buffers)
        if len(shapes) <= _SHAPES and held <= _BYTES:
            return
        shapes.popitem(last=False)


_POOLED = 8
"""Buffers kept per role and shape and thread (one per layer and direction in flight)."""

_SHAPES = 4
"""Shapes kept per role and thread; the least recently used goes first."""

_BYTES = 256 * 2**20
"""Bytes kept per role and thread; the most recent shape's buffers stay whatever their size."""


def pooled() -> list[tuple[str, Tensor]]:
    """Every buffer this thread's pool holds, with its role."""
    pool = _SCRATCH.__dict__.get("pool", {})
    return [(role, b) for role, shapes in pool.items() for held in shapes.values() for b in held]


def _poolable() -> bool:
    """Whether saved buffers may be reused: owners counted, no saved-tensor hook, no inference."""
    top_hooks = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    if top_hooks is None or _storage_owners() is None or torch.is_inference_mode_enabled():
        return False
    return top_hooks(False) is None


def _storage_owners() -> Callable[[int], int] | None:
    owners: Callable[[int], int] | None = getattr(torch._C, "_storage_Use_Count", None)
    return owners


def _unshared(buffer: Tensor) -> bool:
    """Whether only the pool holds ``buffer``: no other tensor, view or alias of its memory."""
    owners, use_count = _storage_owners(), getattr(buffer, "_use_count", None)
    if owners is None or use_count is None or use_count() != 1:
        return False
    return owners(buffer.untyped_storage()._cdata) == _baseline(owners)


def _baseline(owners: Callable[[int], int]) -> int:
    """The owner count of the memory of a tensor that one Python object alone holds."""
    baseline: int | None = getattr(_SCRATCH, "baseline", None)
    if baseline is None:
        probe = torch.empty(1)
        baseline = _SCRATCH.baseline = owners(probe.untyped_storage()._cdata)
    return baseline


SEQUENCE = True
"""Whether to run a whole recurrence in one compiled call where the loops allow it (tests turn
it off to compare with the per-step calls)."""

_ROWS_PER_THREAD = 8
"""Fewer rows than this per thread are not worth splitting the batch for."""


def _sequence(loops: _fused.Steps) -> bool:
    """Whether to run whole recurrences; ``RNNKIT_FUSED_SEQUENCE=0`` keeps the per-step calls."""
    return SEQUENCE and loops.sequence and os.environ.get("RNNKIT_FUSED_SEQUENCE", "1") != "0"


def _threads(batch: int) -> int:
    """Threads for a whole-recurrence call: torch's intra-op count, each with enough rows."""
    return max(1, min(torch.get_num_threads(), batch // _ROWS_PER_THREAD))


def _whole(
    function: Callable[..., None],
    loops: _fused.Steps,
    arguments: Sequence[Tensor | int],
    sizes: tuple[int, int, int],
    *flags: bool,
) -> None:
    """Call a ``*_seq`` loop with ``loops.gemm``, its arguments, ``(L, N, H)``, flags, threads.

    Each argument goes as a tensor's data pointer or an int as it is (a pointer or a stride);
    the tensors stay referenced here until the call returns, so the loops never read freed
    memory.
    """
    pointers = [a.data_ptr() if isinstance(a, Tensor) else a for a in arguments]
    function(loops.gemm, *pointers, *sizes, *map(int, flags), _threads(sizes[1]))


def _copy_or_zeros(grad: Tensor | None, like: Tensor) -> Tensor:
    """A contiguous copy of ``grad`` (the loops write into it), or zeros where it is ``None``."""
    copy = torch.zeros_like(like, memory_format=torch.contiguous_format)
    return copy if grad is None else copy.copy_(grad)


def gru_forward(
    loops: _fused.Steps,
    rows: Tensor,
    start: Tensor,
    weights: tuple[Tensor, ...],
    reverse: bool,
    zero_start: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """The forward steps: ``(gates, rec_n, states)``, time-major.

    ``zero_start``: ``start`` is zeros (no ``h0`` given), so the whole-recurrence call skips the
    first step's product; the per-step calls compute it anyway (the same zeros).

    ``gates`` holds ``r, z, n`` as ``gru._run_steps`` leaves them; ``rec_n``, ``(L, N, H)``,
    only the ``n`` block of its ``recurrent`` buffer, which is all the backward pass reads.
    Each step's product goes to one reused ``(N, 3H)`` buffer.
    """
    w_ih, w_hh, b_ih, b_hh = weights
    batch, hidden = start.shape
    steps = rows.shape[0] // batch
    gates = _saved_buffer(rows, (steps, batch, 3 * hidden), "gru gates")
    torch.mm(rows, w_ih.t(), out=gates.view(-1, 3 * hidden))
    states = rows.new_empty(steps, batch, hidden)
    rec_n = _saved_buffer(rows, (steps, batch, hidden), "gru rec_n")
    product = rows.new_empty(batch, 3 * hidden)
    biases = b_ih.contiguous(), b_hh.contiguous()
    if _sequence(loops):
        arguments = (gates, w_hh.contiguous(), *biases, start, states, rec_n, product)
        _whole(loops.gru_forward_seq, loops, arguments, (steps, batch, hidden), reverse, zero_start)
        return gates, rec_n, states
    (gates_at, gates_step), (states_at, step), (rec_at, _) = map(_at, (gates, states, rec_n))
    weight, views = w_hh.t(), states.unbind(0)
    previous, previous_at = start, start.data_ptr()
    for t in order(steps, reverse):
        torch.mm(previous, weight, out=product)
        state_at = states_at + t * step
        loops.gru_forward(
            gates_at + t * gates_step,
            product.data_ptr(),
            biases[0].data_ptr(),
            biases[1].data_ptr(),
            previous_at,
            state_at,
            rec_at + t * step,
            batch,
            hidden,
        )
        previous, previous_at = views[t], state_at
    return gates, rec_n, states


def gru_backward(
    loops: _fused.Steps,
    grads_out: tuple[Tensor | None, Tensor | None],
    saved: tuple[Tensor, Tensor, Tensor, Tensor],
    w_hh: Tensor,
    reverse: bool,
    wants_h0: bool,
) -> tuple[Tensor, Tensor | None]:
    """Every step's gate gradients (as ``gru._carry_back`` lays them out), and ``h0``'s.

    The compiled step adds the output's gradient and ``∂h_{t+1} ⊙ z_{t+1}`` (kept in
    ``carry``) to the product itself, so each step is one product and one compiled call.
    """
    gates, rec_n, states, start = saved
    steps, batch, hidden = states.shape
    _held, below_at, below_step, below_stride = _rows(grads_out[0], states)  # read via pointer
    grads = _workspace(states, 4 * hidden)
    carried, carry = _copy_or_zeros(grads_out[1], start), states.new_empty(batch, hidden)
    if _sequence(loops):
        below = (below_at, below_step // states.element_size(), below_stride)
        weight = w_hh.contiguous()
        arguments = (carried, *below, carry, gates, rec_n, states, start, grads, weight)
        _whole(loops.gru_backward_seq, loops, arguments, (steps, batch, hidden), reverse)
        first = steps - 1 if reverse else 0
        grad_h0 = torch.mm(grads[first, :, hidden:], w_hh).add_(carry) if wants_h0 else None
        return grads, grad_h0
    (gates_at, gates_step), (states_at, states_step) = _at(gates), _at(states)
    rec_at, (grads_at, grads_step) = rec_n.data_ptr(), _at(grads)
    recurrent_side = grads[..., hidden:].unbind(0)
    visits = list(order(steps, reverse))
    for position in range(steps - 1, -1, -1):
        t = visits[position]
        before = states_at + visits[position - 1] * states_step if position else start.data_ptr()
        loops.gru_backward(
            carried.data_ptr(),
            below_at + t * below_step,
            below_stride,
            carry.data_ptr(),
            int(position < steps - 1),
            gates_at + t * gates_step,
            rec_at + t * states_step,
            before,
            grads_at + t * grads_step,
            batch,
            hidden,
        )
        if position:
            torch.mm(recurrent_side[t], w_hh, out=carried)
        elif wants_h0:
            return grads, torch.mm(recurrent_side[t], w_hh).add_(carry)
    return grads, None


def lstm_forward(
    loops: _fused.Steps,
    x: Tensor,
    starts: tuple[Tensor, Tensor],
    weights: tuple[Tensor, Tensor, Tensor],
    reverse: bool,
    zero_start: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Forward over ``x``, ``(L, N, H_in)``: ``(gates, cells, squashed, states, inputs)``.

    The first four are as ``lstm._run_steps`` fills them, but with the weights, the bias and
    the gates in torch's gate order (i, f, g, o).

    ``zero_start``: ``h0`` is zeros, so the whole-recurrence call skips the first step's
    product; the per-step calls compute it anyway (the same zeros).

    The last is what the weights' gradients multiply the gate gradients with. A
    whole-recurrence call returns ``joined``, ``(L, N, H + H_in)``: each step's
    ``[h_{t-1}, x_t]``, whose product with the gate gradients is both weights' gradients (its
    steps form their gates with one product of their ``joined`` rows). The per-step calls form
    ``W_ih x_t`` for all steps first and return ``x``'s ``(L·N, H_in)`` rows.
    """
    w_ih, w_hh, bias = weights
    steps, batch, width = x.shape
    hidden = starts[1].shape[1]
    gates = _saved_buffer(x, (steps, batch, 4 * hidden), "lstm gates")
    cells = _saved_buffer(x, (steps, batch, hidden), "lstm cells")
    squashed = _saved_buffer(x, (steps, batch, hidden), "lstm squashed")
    states = x.new_empty(steps, batch, hidden)
    bias = bias.contiguous()
    if _sequence(loops):
        joined = _saved_buffer(x, (steps, batch, hidden + width), "lstm joined")
        joined[..., hidden:].copy_(x)
        joined[steps - 1 if reverse else 0, :, :hidden].copy_(starts[0])  # the loops fill the rest
        weight = torch.cat([w_hh, w_ih], dim=1)
        arguments = (gates, joined, weight, bias, starts[1], cells, squashed, states, width)
        sizes = (steps, batch, hidden)
        _whole(loops.lstm_forward_seq, loops, arguments, sizes, reverse, zero_start)
        return gates, cells, squashed, states, joined
    rows = x.reshape(steps * batch, width)
    torch.mm(rows, w_ih.t(), out=gates.view(-1, 4 * hidden))
    (gates_at, gates_step), (cells_at, step) = _at(gates), _at(cells)
    squashed_at, states_at = squashed.data_ptr(), states.data_ptr()
    weight, gate_rows, views = w_hh.t(), gates.unbind(0), states.unbind(0)
    h, c_at = starts[0], starts[1].data_ptr()
    for t in order(steps, reverse):
        gate_rows[t].addmm_(h, weight)  # in place: no copy of a bias
        offset = t * step  # cells, squashed and states share one layout
        loops.lstm_forward(
            gates_at + t * gates_step,
            bias.data_ptr(),
            c_at,
            cells_at + offset,
            squashed_at + offset,
            states_at + offset,
            batch,
            hidden,
        )
        h, c_at = views[t], cells_at + offset
    return gates, cells, squashed, states, rows


def lstm_backward(
    loops: _fused.Steps,
    grads_out: tuple[Tensor | None, Tensor | None, Tensor | None],
    saved: tuple[Tensor, Tensor, Tensor],
    c_start: Tensor,
    w_hh: Tensor,
    reverse: bool,
    wants: tuple[bool, bool],
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Every step's gate gradients (torch's gate order), and ``h0``'s and ``c0``'s.

    ``saved`` is ``(gates, cells, squashed)`` as :func:`lstm_forward` left them.
    """
    gates, cells, squashed = saved
    steps, batch, hidden = cells.shape
    _held, below_at, below_step, below_stride = _rows(grads_out[0], cells)  # read via pointer
    grads = _workspace(cells, 4 * hidden)
    carried = _copy_or_zeros(grads_out[1], c_start)  # each step's product writes here later
    cell_grad = _copy_or_zeros(grads_out[2], c_start)  # each step turns ∂c_t into ∂c_{t-1}
    if _sequence(loops):
        below = (below_at, below_step // cells.element_size(), below_stride)
        weight = w_hh.contiguous()
        arguments = (carried, *below, cell_grad, gates, squashed, cells, c_start, grads, weight)
        _whole(loops.lstm_backward_seq, loops, arguments, (steps, batch, hidden), reverse)
        first = steps - 1 if reverse else 0
        grad_h0 = torch.mm(grads[first], w_hh) if wants[0] else None
        return grads, grad_h0, cell_grad if wants[1] else None
    (gates_at, gates_step), (cells_at, step) = _at(gates), _at(cells)
    squashed_at, (grads_at, grads_step) = squashed.data_ptr(), _at(grads)
    rows = grads.unbind(0)
    visits = list(order(steps, reverse))
    grad_h0 = None
    for position in range(steps - 1, -1, -1):
        t = visits[position]
        before = cells_at + visits[position - 1] * step if position else c_start.data_ptr()
        loops.lstm_backward(
            carried.data_ptr(),
            below_at + t * below_step,
            below_stride,
            cell_grad.data_ptr(),
            gates_at + t * gates_step,
            squashed_at + t * step,
            before,
            grads_at + t * grads_step,
            batch,
            hidden,
        )
        if position:
            torch.mm(rows[t], w_hh, out=carried)
        elif wants[0]:
            grad_h0 = torch.mm(rows[t], w_hh)
    return grads, grad_h0, cell_grad if wants[1] else None
