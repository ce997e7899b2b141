r"""rnnkit's CPU kernel for GRU layers (``cell="gru"``), faster to train than torch's.

Torch's CPU GRU records every step's operations for autograd, each with its own small
products. This kernel is one autograd node per layer and direction. The forward pass forms
:math:`W_{ih} X_t + b_{ih}` for all steps with one product, then runs torch's recurrence

.. math::
    r_t = \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}),\quad
    z_t = \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}),

    n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})),\quad
    h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}

in place into preallocated buffers; the backward pass carries :math:`\partial h_{t-1}` back
step by step and then forms each weight's gradient with one matrix product over all steps.
Each step's elementwise work (everything but the product) runs as one compiled loop where
rnnkit's C++ step can be built on this machine (``_fused``), else as torch operations (the
same results). Same arithmetic, other rounding: results agree with :class:`torch.nn.GRU` to
float rounding, not bitwise.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from rnnkit.kernels import _fused_loops
from rnnkit.kernels._common import (
    made_by,
    order,
    refusal,
    run_directions,
    summed_outer,
    zeros_if_none,
)

__all__ = ["MIN_STEPS", "applies", "refusal_reason", "run_stack", "shares_saved_states"]

MIN_STEPS = 4
"""Shorter sequences run torch's layer under ``kernel="auto"`` (as for the plain RNN: the
kernel's per-call Python costs about as much as it saves on a few steps)."""

_tanh_backward = torch.ops.aten.tanh_backward.grad_input
_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input


def refusal_reason(rnn: nn.RNNBase, x: object) -> str | None:
    """Why this kernel cannot compute ``rnn(x)``, or ``None`` when it can."""
    return refusal(rnn, x, nn.GRU)


def applies(rnn: nn.RNNBase, x: object) -> bool:
    """Whether ``kernel="auto"`` runs ``rnn(x)`` through this kernel.

    Where it can (:func:`refusal_reason` is ``None``), while autograd records (without it
    torch's own loop is as fast), on sequences of at least :data:`MIN_STEPS` steps, and where
    its compiled step is available (built on the first such call): with its steps as torch
    operations the kernel is no faster than torch's layer.
    """
    return (
        torch.is_grad_enabled()
        and refusal_reason(rnn, x) is None
        and isinstance(x, Tensor)
        and x.shape[1] >= MIN_STEPS
        and _fused_loops.usable(x) is not None
    )


def shares_saved_states(output: Tensor) -> bool:
    """Whether ``output`` is (a view of) the states buffer a call saved for backward."""
    return made_by(output, _Direction) is not None


def run_stack(rnn: nn.GRU, x: Tensor, h0: Tensor | None) -> tuple[Tensor, Tensor]:
    """Run ``rnn``'s layers and directions over ``x`` as ``rnn(x, h0)`` does, by this kernel.

    Args:
        rnn: A batch-first :class:`torch.nn.GRU` with biases (any layers, D = 1 or 2).
        x: The input sequences.
        h0: The initial state, or ``None`` for zeros.

    Returns:
        ``(output, h_n)``; ``output`` is a batch-first view of a time-major buffer.

    Shapes:
        - ``x``: ``(N, L, H_in)``; ``h0``, ``h_n``: ``(D·num_layers, N, H)``.
        - ``output``: ``(N, L, D·H)``.
    """

    def direction(
        inputs: Tensor, start: Tensor | None, weights: tuple[Tensor, ...], reverse: bool
    ) -> tuple[Tensor, Tensor]:
        states, final = _Direction.apply(inputs, start, *weights, reverse)
        return states, final

    return run_directions(rnn, x, h0, direction)


class _Direction(torch.autograd.Function):
    """One direction of one layer: ``(L, N, H_in)`` inputs to ``(L, N, H)`` states."""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        h0: Tensor | None,
        w_ih: Tensor,
        w_hh: Tensor,
        b_ih: Tensor,
        b_hh: Tensor,
        reverse: bool,
    ) -> tuple[Tensor, Tensor]:
        steps, batch, width = x.shape
        hidden = w_hh.shape[1]
        rows = x.reshape(steps * batch, width)  # kept for backward's weight gradient
        start = x.new_zeros(batch, hidden) if h0 is None else h0.contiguous()
        weights = (w_ih, w_hh, b_ih, b_hh)
        ctx.loops = loops = _fused_loops.usable(x, (start,), weights, gates=3)
        if loops is None:
            gates, recurrent, states = _run_steps(rows, start, weights, steps, reverse)
        else:  # recurrent: only W_hn h_{t-1} + b_hn, (L, N, H)
            gates, recurrent, states = _fused_loops.gru_forward(
                loops, rows, start, weights, reverse, zero_start=h0 is None
            )
        ctx.save_for_backward(rows, start, w_ih, w_hh, gates, recurrent, states)
        ctx.reverse, ctx.x_shape, ctx.given_h0 = reverse, x.shape, h0 is not None
        ctx.set_materialize_grads(False)  # an unused output's gradient arrives as None
        return states, states[0 if reverse else -1].clone()

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, grad_states: Tensor | None, grad_final: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        rows, start, w_ih, w_hh, gates, recurrent, states = ctx.saved_tensors
        hidden = w_hh.shape[1]
        wants_h0 = bool(ctx.needs_input_grad[1])
        if ctx.loops is None:
            grads, grad_h0 = _carry_back(
                zeros_if_none(grad_states, states),
                zeros_if_none(grad_final, start),
                gates,
                recurrent,
                states,
                start,
                w_hh,
                ctx.reverse,
                wants_h0,
            )
        else:
            grads, grad_h0 = _fused_loops.gru_backward(
                ctx.loops,
                (grad_states, grad_final),
                (gates, recurrent, states, start),
                w_hh,
                ctx.reverse,
                wants_h0,
            )
        flat = grads.view(-1, 4 * hidden)
        grad_input = flat[:, : 3 * hidden]  # (n, r, z); columns hidden: are (r, z, n')
        grad_w_ih = _from_nrz(summed_outer(grad_input, rows), hidden)
        sums = flat.sum(0)  # one pass for both biases' gradients
        grad_b_ih, grad_b_hh = _from_nrz(sums[: 3 * hidden], hidden), sums[hidden:]
        grad_w_hh = _recurrent_weight_grad(grads[..., hidden:], states, start, ctx)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad_input @ _to_nrz(w_ih, hidden)).view(ctx.x_shape)
        return grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, None


def _run_steps(
    rows: Tensor, start: Tensor, weights: tuple[Tensor, ...], steps: int, reverse: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """The forward steps as torch operations: ``(gates, recurrent, states)`` buffers."""
    w_ih, w_hh, b_ih, b_hh = weights
    batch, hidden = start.shape
    # the gates buffer: input parts of all steps in one product, then r, z, n in place
    gates = torch.addmm(b_ih, rows, w_ih.t()).view(steps, batch, 3 * hidden)
    recurrent = rows.new_empty(steps, batch, 3 * hidden)  # W_hh h_{t-1} + b_hh per step
    states = rows.new_empty(steps, batch, hidden)
    previous = start
    for t in order(steps, reverse):
        _step(gates[t], recurrent[t], states[t], previous, w_hh, b_hh, hidden)
        previous = states[t]
    return gates, recurrent, states


def _step(
    gates: Tensor,
    recurrent: Tensor,
    state: Tensor,
    previous: Tensor,
    w_hh: Tensor,
    b_hh: Tensor,
    hidden: int,
) -> None:
    """One step in place: ``gates`` holds ``W_ih x_t + b_ih`` and becomes ``(r, z, n)``."""
    torch.addmm(b_hh, previous, w_hh.t(), out=recurrent)
    rz = gates[:, : 2 * hidden]
    rz.add_(recurrent[:, : 2 * hidden]).sigmoid_()
    n = gates[:, 2 * hidden :]
    n.addcmul_(rz[:, :hidden], recurrent[:, 2 * hidden :]).tanh_()
    torch.lerp(n, previous, rz[:, hidden:], out=state)  # n + z (h_{t-1} - n)


def _carry_back(
    grad_states: Tensor,
    grad_final: Tensor,
    gates: Tensor,
    recurrent: Tensor,
    states: Tensor,
    start: Tensor,
    w_hh: Tensor,
    reverse: bool,
    wants_h0: bool,
) -> tuple[Tensor, Tensor | None]:
    """Walk the steps backwards; return every step's gate gradients, and ``h0``'s if wanted.

    Each step's row of the returned ``(L, N, 4H)`` buffer holds the gradients at the
    pre-activations of ``n``, ``r`` and ``z`` (the input side's, in that order) and then
    ``∂n_pre ⊙ r`` (so columns ``H:`` are the recurrent side's, in torch's ``r, z, n`` order):
    each side's gradient is then one strided view, with no copy.
    """
    steps, batch, hidden = states.shape
    grads = states.new_empty(steps, batch, 4 * hidden)
    scratch = states.new_empty(batch, 2 * hidden)
    visits = list(order(steps, reverse))
    carried = grad_final + grad_states[visits[-1]]
    for position in range(steps - 1, -1, -1):
        t = visits[position]
        previous = states[visits[position - 1]] if position > 0 else start
        _step_back(grads[t], scratch, carried, gates[t], recurrent[t], previous, hidden)
        if position > 0:
            below = grad_states[visits[position - 1]]
            carried = torch.addmm(below, grads[t, :, hidden:], w_hh).addcmul_(
                carried, gates[t, :, hidden : 2 * hidden]
            )
        elif wants_h0:
            carried = torch.mm(grads[t, :, hidden:], w_hh).addcmul_(
                carried, gates[t, :, hidden : 2 * hidden]
            )
    return grads, carried if wants_h0 else None


def _step_back(
    grads: Tensor,
    scratch: Tensor,
    carried: Tensor,
    gates: Tensor,
    recurrent: Tensor,
    previous: Tensor,
    hidden: int,
) -> None:
    """One step's gate gradients into ``grads`` (N, 4H), from ``carried`` = ∂h_t."""
    r, z, n = gates[:, :hidden], gates[:, hidden : 2 * hidden], gates[:, 2 * hidden :]
    grad_n = grads[:, :hidden]
    torch.addcmul(carried, carried, z, value=-1, out=scratch[:, :hidden])  # ∂h (1 - z)
    _tanh_backward(scratch[:, :hidden], n, grad_input=grad_n)
    torch.mul(grad_n, recurrent[:, 2 * hidden :], out=scratch[:, :hidden])  # ∂r
    torch.sub(previous, n, out=scratch[:, hidden:]).mul_(carried)  # ∂z
    _sigmoid_backward(scratch, gates[:, : 2 * hidden], grad_input=grads[:, hidden : 3 * hidden])
    torch.mul(grad_n, r, out=grads[:, 3 * hidden :])


def _recurrent_weight_grad(grads: Tensor, states: Tensor, start: Tensor, ctx: Any) -> Tensor:
    """``Σ_t ∂G_tᵀ h_{t-1}`` as one product over the steps with a predecessor, plus ``h0``'s."""
    width, hidden = grads.shape[-1], states.shape[-1]
    later, earlier = (grads[:-1], states[1:]) if ctx.reverse else (grads[1:], states[:-1])
    grad = later.reshape(-1, width).t() @ earlier.reshape(-1, hidden)
    if ctx.given_h0:
        first = grads[-1] if ctx.reverse else grads[0]
        grad.addmm_(first.t(), start)
    return grad


def _to_nrz(tensor: Tensor, hidden: int) -> Tensor:
    """Torch's ``(r, z, n)`` row blocks reordered ``(n, r, z)``."""
    return torch.cat([tensor[2 * hidden :], tensor[: 2 * hidden]])


def _from_nrz(tensor: Tensor, hidden: int) -> Tensor:
    """``(n, r, z)`` row blocks back in torch's ``(r, z, n)`` order."""
    return torch.cat([tensor[hidden:], tensor[:hidden]])
