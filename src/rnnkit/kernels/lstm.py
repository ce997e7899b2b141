r"""rnnkit's CPU kernel for LSTM layers (``cell="lstm"``, without ``proj_size``).

One autograd node per layer and direction, as for the plain RNN and the GRU. The forward
pass forms :math:`W_{ih} x_t + b_{ih} + b_{hh}` for all steps with one product, then runs
torch's recurrence

.. math::
    (i_t, f_t, g_t, o_t) = (\sigma, \sigma, \tanh, \sigma)(W_{ih} x_t + b_{ih}
    + W_{hh} h_{t-1} + b_{hh}),\quad
    c_t = f_t \odot c_{t-1} + i_t \odot g_t,\quad h_t = o_t \odot \tanh(c_t)

in place into preallocated buffers; the backward pass carries :math:`\partial h_{t-1}` and
:math:`\partial c_{t-1}` back step by step and then forms each weight's gradient with one
matrix product over all steps.

Each step's elementwise work runs as one compiled loop where rnnkit's C++ step can be built
on this machine (``_fused``), in torch's gate order; else as torch operations, with the gates
kept in the order ``i, f, o, g`` so that the three sigmoids are one call (the same results).
Where the compiled loops run the whole recurrence, each step forms both gate terms with one
product of :math:`[h_{t-1}, x_t]`, whose rows for all steps then give both weights' gradients
in one product. Results agree with :class:`torch.nn.LSTM` to float rounding, not bitwise.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from rnnkit.kernels import _fused_loops
from rnnkit.kernels._common import (
    layer_weights,
    made_by,
    order,
    refusal,
    summed_outer,
    zeros_if_none,
)

__all__ = ["MIN_STEPS", "applies", "refusal_reason", "run_stack", "shares_saved_states"]

MIN_STEPS = 4
"""Shorter sequences run torch's layer under ``kernel="auto"``."""

_tanh_backward = torch.ops.aten.tanh_backward.grad_input
_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input


def refusal_reason(rnn: nn.RNNBase, x: object) -> str | None:
    """Why this kernel cannot compute ``rnn(x)``, or ``None`` when it can."""
    return refusal(rnn, x, nn.LSTM)


def applies(rnn: nn.RNNBase, x: object) -> bool:
    """Whether ``kernel="auto"`` runs ``rnn(x)`` through this kernel.

    Where it can (:func:`refusal_reason` is ``None``), while autograd records, on sequences
    of at least :data:`MIN_STEPS` steps, and where its compiled step is available (with its
    steps as torch operations it is slower than torch's layer).
    """
    return (
        torch.is_grad_enabled()
        and refusal_reason(rnn, x) is None
        and isinstance(x, Tensor)
        and x.shape[1] >= MIN_STEPS
        and _fused_loops.usable(x) is not None
    )


def shares_saved_states(output: Tensor) -> bool:
    """Whether ``output`` is (a view of) a states buffer that its call saved for backward.

    A whole-recurrence call saves none (its backward pass reads each ``h_{t-1}`` from its own
    ``[h_{t-1}, x_t]`` buffer), so its output may be modified in place without a copy.
    """
    node = made_by(output, _Direction)
    return node is not None and not node.joined


def run_stack(
    rnn: nn.LSTM, x: Tensor, state: tuple[Tensor, Tensor] | None
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Run ``rnn``'s layers and directions over ``x`` as ``rnn(x, state)`` does.

    Args:
        rnn: A batch-first :class:`torch.nn.LSTM` with biases and no projection.
        x: The input sequences.
        state: ``(h0, c0)``, or ``None`` for zeros.

    Returns:
        ``(output, (h_n, c_n))``; ``output`` is a batch-first view of a time-major buffer.

    Shapes:
        - ``x``: ``(N, L, H_in)``; ``h0``, ``c0``, ``h_n``, ``c_n``: ``(D·num_layers, N, H)``.
        - ``output``: ``(N, L, D·H)``.
    """
    directions = 2 if rnn.bidirectional else 1
    inputs = x.transpose(0, 1)
    finals: list[Tensor] = []
    cells: list[Tensor] = []
    for layer in range(rnn.num_layers):
        outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            h0, c0 = (None, None) if state is None else (state[0][index], state[1][index])
            weights = layer_weights(rnn, layer, direction == 1)
            states, final, cell = _Direction.apply(inputs, h0, c0, *weights, direction == 1)
            outputs.append(states)
            finals.append(final)
            cells.append(cell)
        inputs = outputs[0] if directions == 1 else torch.cat(outputs, dim=2)
    return inputs.transpose(0, 1), (torch.stack(finals), torch.stack(cells))


class _Direction(torch.autograd.Function):
    """One direction of one layer: ``(L, N, H_in)`` inputs to ``(L, N, H)`` states."""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        h0: Tensor | None,
        c0: Tensor | None,
        w_ih: Tensor,
        w_hh: Tensor,
        b_ih: Tensor,
        b_hh: Tensor,
        reverse: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        steps, batch, width = x.shape
        hidden = w_hh.shape[1]
        weights = (w_ih, w_hh, b_ih + b_hh)
        h_start = x.new_zeros(batch, hidden) if h0 is None else h0.contiguous()
        c_start = x.new_zeros(batch, hidden) if c0 is None else c0.contiguous()
        starts = (h_start, c_start)  # both read as raw memory by the compiled loops
        ctx.loops = loops = _fused_loops.usable(x, starts, weights, gates=4)
        if loops is None:  # torch operations, in the gate order (i, f, o, g)
            weights = (_to_ifog(w_ih, hidden), _to_ifog(w_hh, hidden), _to_ifog(weights[2], hidden))
            inputs = x.reshape(steps * batch, width)
            gates, cells, squashed, states = _run_steps(inputs, starts, weights, steps, reverse)
        else:  # compiled loops, in torch's gate order (i, f, g, o)
            gates, cells, squashed, states, inputs = _fused_loops.lstm_forward(
                loops, x, starts, weights, reverse, zero_start=h0 is None
            )
        # inputs: each step's x_t as (L·N, H_in) rows, or [h_{t-1}, x_t] as (L, N, H + H_in)
        ctx.joined = joined = inputs.dim() == 3  # then backward needs no states
        kept = None if joined else states
        ctx.save_for_backward(
            inputs, h_start, c_start, weights[0], weights[1], gates, cells, squashed, kept
        )
        ctx.reverse, ctx.x_shape, ctx.given_h0 = reverse, x.shape, h0 is not None
        ctx.set_materialize_grads(False)  # an unused output's gradient arrives as None
        last = 0 if reverse else -1
        return states, states[last].clone(), cells[last].clone()

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, grad_states: Tensor | None, grad_final: Tensor | None, grad_cell: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        inputs, h_start, c_start, w_ih, w_hh, gates, cells, squashed, states = ctx.saved_tensors
        hidden = w_hh.shape[1]
        wants = bool(ctx.needs_input_grad[1]), bool(ctx.needs_input_grad[2])
        grads_out = (grad_states, grad_final, grad_cell)
        saved = (gates, cells, squashed, states)
        if ctx.loops is None:
            filled = (
                zeros_if_none(grad_states, states),
                zeros_if_none(grad_final, h_start),
                zeros_if_none(grad_cell, c_start),
            )
            grads, grad_h0, grad_c0 = _carry_back(
                filled, saved, (h_start, c_start), w_hh, ctx.reverse, wants
            )
        else:
            grads, grad_h0, grad_c0 = _fused_loops.lstm_backward(
                ctx.loops, grads_out, saved[:3], c_start, w_hh, ctx.reverse, wants
            )
        flat = grads.view(-1, 4 * hidden)
        reorder = _from_ifog if ctx.loops is None else _as_is
        if ctx.joined:  # one product: [∂W_hh, ∂W_ih]ᵀ = Σ_t [h_{t-1}, x_t]ᵀ ∂G_t
            both = (
                inputs.view(flat.shape[0], -1).t() @ flat
            )  # the faster way round; see summed_outer
            grad_w_hh, grad_w_ih = (
                part.t().contiguous() for part in both.split([hidden, len(both) - hidden])
            )
        else:
            grad_w_ih = reorder(summed_outer(flat, inputs), hidden)
            grad_w_hh = reorder(_recurrent_weight_grad(grads, states, h_start, ctx), hidden)
        grad_b = reorder(flat.sum(0), hidden)
        grad_x = (flat @ w_ih).view(ctx.x_shape) if ctx.needs_input_grad[0] else None
        return grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b, grad_b.clone(), None


def _run_steps(
    rows: Tensor,
    starts: tuple[Tensor, Tensor],
    weights: tuple[Tensor, Tensor, Tensor],
    steps: int,
    reverse: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The forward steps as torch operations: ``(gates, cells, squashed, states)`` buffers."""
    w_ih, w_hh, bias = weights
    batch, hidden = starts[1].shape
    gates = torch.addmm(bias, rows, w_ih.t()).view(steps, batch, 4 * hidden)
    cells = rows.new_empty(steps, batch, hidden)
    squashed = rows.new_empty(steps, batch, hidden)  # tanh(c_t)
    states = rows.new_empty(steps, batch, hidden)
    h, c = starts
    for t in order(steps, reverse):
        _step(gates[t], cells[t], squashed[t], states[t], h, c, w_hh, hidden)
        h, c = states[t], cells[t]
    return gates, cells, squashed, states


def _step(
    gates: Tensor,
    cell: Tensor,
    squashed: Tensor,
    state: Tensor,
    h: Tensor,
    c: Tensor,
    w_hh: Tensor,
    hidden: int,
) -> None:
    """One step in place: ``gates`` holds ``W_ih x_t + b`` and becomes ``(i, f, o, g)``."""
    gates.addmm_(h, w_hh.t())
    gates[:, : 3 * hidden].sigmoid_()
    g = gates[:, 3 * hidden :].tanh_()
    torch.mul(gates[:, hidden : 2 * hidden], c, out=cell).addcmul_(gates[:, :hidden], g)
    torch.tanh(cell, out=squashed)
    torch.mul(gates[:, 2 * hidden : 3 * hidden], squashed, out=state)


def _carry_back(
    grads_out: tuple[Tensor, Tensor, Tensor],
    saved: tuple[Tensor, Tensor, Tensor, Tensor],
    starts: tuple[Tensor, Tensor],
    w_hh: Tensor,
    reverse: bool,
    wants: tuple[bool, bool],
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Walk the steps backwards; return every step's gate gradients, and ``h0``'s, ``c0``'s.

    ``carried`` is ``∂h_t`` (from later steps and the output at t), ``cell_grad`` is
    ``∂c_t`` from later steps (and from ``c_n``).
    """
    grad_states, grad_final, grad_cell = grads_out
    gates, cells, squashed, states = saved
    steps, batch, hidden = states.shape
    grads = states.new_empty(steps, batch, 4 * hidden)
    scratch = states.new_empty(batch, 4 * hidden)
    visits = list(order(steps, reverse))
    carried = grad_final + grad_states[visits[-1]]
    cell_grad = grad_cell
    for position in range(steps - 1, -1, -1):
        t = visits[position]
        first = position == 0
        c_prev = starts[1] if first else cells[visits[position - 1]]
        cell_grad = _step_back(
            grads[t], scratch, carried, cell_grad, gates[t], squashed[t], c_prev, hidden
        )
        if not first:
            carried = torch.addmm(grad_states[visits[position - 1]], grads[t], w_hh)
        elif wants[0]:
            carried = torch.mm(grads[t], w_hh)
    return grads, carried if wants[0] else None, cell_grad if wants[1] else None


def _step_back(
    grads: Tensor,
    scratch: Tensor,
    carried: Tensor,
    cell_grad: Tensor,
    gates: Tensor,
    squashed: Tensor,
    c_prev: Tensor,
    hidden: int,
) -> Tensor:
    """One step's gate gradients into ``grads`` (N, 4H), from ``∂h_t``; return ``∂c_{t-1}``.

    ``scratch`` (N, 4H) gathers the sigmoid gates' output gradients side by side, so one
    call turns all three into pre-activation gradients; its last block holds ``∂c_t``.
    """
    i, f, o, g = (gates[:, k * hidden : (k + 1) * hidden] for k in range(4))
    grad_c = scratch[:, 3 * hidden :]
    torch.mul(carried, o, out=grad_c)
    _tanh_backward(grad_c, squashed, grad_input=grad_c)
    grad_c.add_(cell_grad)  # ∂c_t, from h_t and from later steps
    torch.mul(grad_c, g, out=scratch[:, :hidden])  # ∂i
    torch.mul(grad_c, c_prev, out=scratch[:, hidden : 2 * hidden])  # ∂f
    torch.mul(carried, squashed, out=scratch[:, 2 * hidden : 3 * hidden])  # ∂o
    _sigmoid_backward(
        scratch[:, : 3 * hidden], gates[:, : 3 * hidden], grad_input=grads[:, : 3 * hidden]
    )
    grad_g = grads[:, 3 * hidden :]
    torch.mul(grad_c, i, out=grad_g)
    _tanh_backward(grad_g, g, grad_input=grad_g)
    return grad_c * f


def _recurrent_weight_grad(grads: Tensor, states: Tensor, start: Tensor, ctx: Any) -> Tensor:
    """``Σ_t ∂G_tᵀ h_{t-1}`` as one product over the steps with a predecessor, plus ``h0``'s."""
    width, hidden = grads.shape[-1], states.shape[-1]
    later, earlier = (grads[:-1], states[1:]) if ctx.reverse else (grads[1:], states[:-1])
    grad = later.reshape(-1, width).t() @ earlier.reshape(-1, hidden)
    if ctx.given_h0:
        first = grads[-1] if ctx.reverse else grads[0]
        grad.addmm_(first.t(), start)
    return grad


def _to_ifog(tensor: Tensor, hidden: int) -> Tensor:
    """Torch's ``(i, f, g, o)`` row blocks reordered ``(i, f, o, g)``."""
    return torch.cat([tensor[: 2 * hidden], tensor[3 * hidden :], tensor[2 * hidden : 3 * hidden]])


def _as_is(tensor: Tensor, hidden: int) -> Tensor:
    """A gradient already in torch's gate order (from the compiled loops)."""
    return tensor


def _from_ifog(tensor: Tensor, hidden: int) -> Tensor:
    """``(i, f, o, g)`` row blocks back in torch's ``(i, f, g, o)`` order (the same swap)."""
    return _to_ifog(tensor, hidden)
