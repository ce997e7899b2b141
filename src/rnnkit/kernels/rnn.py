r"""rnnkit's CPU kernel for plain RNN layers (``cell="rnn"``), faster to train than torch's.

Torch's CPU RNN records every step's operations for autograd: some four nodes a step, each
with its own small weight-gradient product, summed step by step. This kernel is one
autograd node a direction: the forward pass runs the recurrence
:math:`H_t = f(U X_t + W H_{t-1} + b)` into one preallocated ``(L, N, H)`` buffer, and the
backward pass carries :math:`\partial H_{t-1}` back step by step and then forms each weight's
gradient with *one* matrix product over all steps. Same arithmetic, other rounding: results
agree with :class:`torch.nn.RNN` to float rounding, not bitwise.

:func:`run_stack` runs a whole stack (layers and directions) as :class:`torch.nn.RNN` would,
from its own parameters; :func:`applies` says when the encoder uses it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from rnnkit.kernels._common import made_by, order, refusal, run_directions, summed_outer

__all__ = ["MIN_STEPS", "applies", "refusal_reason", "run_stack", "shares_saved_states"]

MIN_STEPS = 4
"""Shorter sequences run torch's layer: the kernel's per-call Python costs about as much as it
saves, or more, below 4 steps (a trial with ``benchmarks/rnn_kernel.py``'s method at L = 1, 2,
3 and 5, recorded in ``benchmarks/NOTES.md``; a closed-loop step calls with L = 1)."""


def refusal_reason(rnn: nn.RNNBase, x: object) -> str | None:
    """Why this kernel cannot compute ``rnn(x)``, or ``None`` when it can."""
    return refusal(rnn, x, nn.RNN)


def applies(rnn: nn.RNNBase, x: object) -> bool:
    """Whether :func:`run_stack` may replace ``rnn(x, h0)``: a plain training pass on the CPU.

    It applies to a batch-first :class:`torch.nn.RNN` with biases and no hooks (a hook, such
    as the legacy ``spectral_norm``, ``weight_norm`` or pruning, must see torch's call), on a
    float32 or float64 CPU tensor (not a packed sequence) of at least :data:`MIN_STEPS` steps,
    when autograd records (without it torch's own loop is as fast), outside autocast, outside
    ``torch.func`` transforms, forward-mode AD and ``torch.jit`` tracing (which need what this
    kernel does not provide), and without dropout between layers in training mode (torch's
    own dropout then runs, so a seed keeps drawing the same masks).

    Args:
        rnn: The wrapped torch layer.
        x: Its input.

    Returns:
        ``True`` when the kernel applies.
    """
    return (
        torch.is_grad_enabled()
        and refusal_reason(rnn, x) is None
        and isinstance(x, Tensor)
        and x.shape[1] >= MIN_STEPS
    )


def shares_saved_states(output: Tensor) -> bool:
    """Whether ``output`` is (a view of) the states buffer a kernel call saved for backward.

    Modifying such a tensor in place would corrupt the backward pass, which autograd refuses,
    so :meth:`rnnkit.RecurrentEncoder.forward` hands the user a copy instead.
    """
    return made_by(output, _Direction) is not None


def run_stack(rnn: nn.RNN, x: Tensor, h0: Tensor | None) -> tuple[Tensor, Tensor]:
    """Run ``rnn``'s layers and directions over ``x`` as ``rnn(x, h0)`` does, by this kernel.

    Args:
        rnn: A batch-first :class:`torch.nn.RNN` (tanh or relu, any layers, D = 1 or 2).
        x: The input sequences.
        h0: The initial state, or ``None`` for zeros.

    Returns:
        ``(output, h_n)``; ``output`` is a batch-first view of a time-major buffer, as torch's
        own is.

    Shapes:
        - ``x``: ``(N, L, H_in)``; ``h0``, ``h_n``: ``(D·num_layers, N, H_out)``.
        - ``output``: ``(N, L, D·H_out)``.
    """
    relu = rnn.nonlinearity == "relu"

    def direction(
        inputs: Tensor, start: Tensor | None, weights: tuple[Tensor, ...], reverse: bool
    ) -> tuple[Tensor, Tensor]:
        states, final = _Direction.apply(inputs, start, *weights, relu, reverse)
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
        relu: bool,
        reverse: bool,
    ) -> tuple[Tensor, Tensor]:
        steps, batch, width = x.shape
        rows = x.reshape(steps * batch, width)  # a copy of the time-major view, kept for backward
        states = x.new_empty(steps, batch, w_hh.shape[0])  # not a view: autograd owns it
        flat = states.view(steps * batch, w_hh.shape[0])
        torch.addmm(b_ih + b_hh, rows, w_ih.t(), out=flat)
        # U X_t + b, then H_t in place, step by step
        previous = h0
        for t in order(steps, reverse):
            if previous is not None:
                states[t].addmm_(previous, w_hh.t())
            _activate_(states[t], relu)
            previous = states[t]
        ctx.save_for_backward(rows, h0, w_ih, w_hh, states)
        ctx.relu, ctx.reverse, ctx.x_shape = relu, reverse, x.shape
        ctx.set_materialize_grads(False)
        return states, states[0 if reverse else -1].clone()

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, grad_states: Tensor | None, grad_final: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        rows, h0, w_ih, w_hh, states = ctx.saved_tensors
        if grad_states is None and grad_final is None:
            return (None,) * 8
        wants_h0 = bool(ctx.needs_input_grad[1])
        pre, grad_h0 = _carry_back(
            grad_states, grad_final, states, w_hh, ctx.relu, ctx.reverse, wants_h0
        )
        flat = pre.view(-1, pre.shape[-1])
        grad_w_hh = _recurrent_weight_grad(pre, states, h0, ctx.reverse)
        grad_w_ih = summed_outer(flat, rows)
        grad_b = flat.sum(0)
        grad_x = (flat @ w_ih).view(ctx.x_shape) if ctx.needs_input_grad[0] else None
        return grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_b, grad_b.clone(), None, None


def _activate_(z: Tensor, relu: bool) -> None:
    if relu:
        z.relu_()
    else:
        z.tanh_()


def _carry_back(
    grad_states: Tensor | None,
    grad_final: Tensor | None,
    states: Tensor,
    w_hh: Tensor,
    relu: bool,
    reverse: bool,
    wants_h0: bool,
) -> tuple[Tensor, Tensor | None]:
    """Walk the steps backwards: the gradient at every pre-activation, and at ``h0`` if wanted.

    ``carried`` is the gradient reaching ``H_t`` from later steps (and from ``h_n`` at the
    last one); ``grad_states[t]`` adds what reaches it from the layer's output at step t.
    """
    pre = torch.empty_like(states)
    carried = grad_final
    visits = list(order(states.shape[0], reverse))
    for position, t in enumerate(reversed(visits)):
        grad = _plus(carried, None if grad_states is None else grad_states[t])
        _activation_backward_into(pre[t], grad, states[t], relu)
        if position + 1 < len(visits) or wants_h0:
            carried = pre[t] @ w_hh
    return pre, carried if wants_h0 else None


def _activation_backward_into(out: Tensor, grad: Tensor | None, state: Tensor, relu: bool) -> None:
    """``out = grad · f'(Z_t)``, from the state ``H_t = f(Z_t)`` (relu or tanh)."""
    if grad is None:
        out.zero_()
    elif relu:
        torch.ops.aten.threshold_backward.grad_input(grad, state, 0, grad_input=out)
    else:
        torch.ops.aten.tanh_backward.grad_input(grad, state, grad_input=out)


def _plus(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    if a is None or b is None:
        return b if a is None else a
    return a + b


def _recurrent_weight_grad(pre: Tensor, states: Tensor, h0: Tensor | None, reverse: bool) -> Tensor:
    """``Σ_t ∂Z_tᵀ H_{t-1}`` as one product over the steps with a predecessor, plus ``h0``'s."""
    width = states.shape[-1]
    later, earlier = (pre[:-1], states[1:]) if reverse else (pre[1:], states[:-1])
    grad = later.reshape(-1, width).t() @ earlier.reshape(-1, width)
    if h0 is not None:
        first = pre[-1] if reverse else pre[0]
        grad.addmm_(first.t(), h0)
    return grad
