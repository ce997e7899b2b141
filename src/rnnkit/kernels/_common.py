"""What rnnkit's recurrent kernels share: when one may stand in for torch's layer, and helpers.

A kernel refuses (:func:`refusal` names why) wherever it cannot compute exactly what torch's
layer computes or would hide something the caller relies on: a hook on the layer, autocast,
a ``torch.func`` transform, forward-mode AD, ``torch.jit`` tracing, a packed sequence, a device
other than the CPU, a dtype other than float32 and float64, layers without biases, and dropout
between layers in training mode (torch's own dropout then runs, so a seed keeps drawing the
same masks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd import forward_ad
from torch.nn.modules import module as _module_hooks

__all__ = [
    "FLOATS",
    "Direction",
    "hooked",
    "layer_weights",
    "made_by",
    "order",
    "refusal",
    "run_directions",
    "special_mode",
    "summed_outer",
    "zeros_if_none",
]

FLOATS = (torch.float32, torch.float64)
"""The dtypes the kernels compute in."""


def refusal(rnn: nn.RNNBase, x: object, kind: type[nn.RNNBase]) -> str | None:
    """Why a kernel for layers of type ``kind`` cannot run ``rnn(x)``, or ``None`` if it can.

    Args:
        rnn: The wrapped torch layer.
        x: Its input.
        kind: The layer class the kernel computes (:class:`torch.nn.RNN`, ``GRU``, ``LSTM``).

    Returns:
        A reason a user can act on, or ``None``.
    """
    if type(rnn) is not kind:
        return f"the layer is a {type(rnn).__name__}, not a {kind.__name__}"
    reason = _input_refusal(x)
    if reason is None:
        reason = _layer_refusal(rnn)
    if reason is None and special_mode():
        reason = "autocast, a torch.func transform, forward-mode AD or torch.jit tracing is active"
    return reason


def _input_refusal(x: object) -> str | None:
    if not isinstance(x, Tensor):
        return "the input is a packed sequence (a padded batch of unequal lengths that must pack)"
    if x.device.type != "cpu":
        return f"the input is on {x.device.type}; the kernel runs on the CPU only"
    if x.dtype not in FLOATS:
        return f"the input is {x.dtype}; the kernel computes in float32 and float64 only"
    if x.dim() != 3:
        return "the input is not a batch-first (N, L, H_in) batch"
    return None


def _layer_refusal(rnn: nn.RNNBase) -> str | None:
    if not rnn.batch_first:
        return "the layer is not batch-first"
    if not rnn.bias:
        return "the layer has no biases"
    if rnn.proj_size > 0:
        return "the LSTM projects its state (proj_size > 0), which the kernel does not compute"
    if rnn.training and rnn.dropout > 0:
        return "dropout between layers in training mode draws torch's own masks"
    if hooked(rnn):
        return "a hook on the layer (or a global module hook) must see torch's call"
    return None


def hooked(module: nn.Module) -> bool:
    """Whether calling ``module`` would run a hook (its own or a global one).

    The same dictionaries :meth:`torch.nn.Module.__call__` checks for its own fast path.
    """
    own = (
        module._forward_hooks,
        module._forward_pre_hooks,
        module._backward_hooks,
        module._backward_pre_hooks,
    )
    shared = (
        _module_hooks._global_forward_hooks,
        _module_hooks._global_forward_pre_hooks,
        _module_hooks._global_backward_hooks,
        _module_hooks._global_backward_pre_hooks,
    )
    return any(len(hooks) > 0 for hooks in (*own, *shared))


def special_mode() -> bool:
    """Autocast, a ``torch.func`` transform, forward-mode AD or ``torch.jit`` tracing."""
    return (
        torch.is_autocast_enabled("cpu")
        or torch.jit.is_tracing()  # type: ignore[attr-defined,no-untyped-call]
        or bool(torch._C._are_functorch_transforms_active())
        or getattr(forward_ad, "_current_level", -1) >= 0
    )


def layer_weights(rnn: nn.RNNBase, layer: int, reverse: bool) -> tuple[Tensor, ...]:
    """``(weight_ih, weight_hh, bias_ih, bias_hh)`` of one layer and direction."""
    suffix = f"_l{layer}{'_reverse' if reverse else ''}"
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    return tuple(getattr(rnn, name + suffix) for name in names)


def order(steps: int, reverse: bool) -> range:
    """The steps in the order a direction visits them."""
    return range(steps - 1, -1, -1) if reverse else range(steps)


Direction = Callable[[Tensor, Tensor | None, tuple[Tensor, ...], bool], tuple[Tensor, Tensor]]
"""``(inputs, h0, weights, reverse) -> (states, h_n)`` for one layer and direction, time-major."""


def run_directions(
    rnn: nn.RNNBase, x: Tensor, h0: Tensor | None, direction: Direction
) -> tuple[Tensor, Tensor]:
    """Run every layer and direction of ``rnn`` as torch's layer stacks them.

    Shapes:
        - ``x``: ``(N, L, H_in)``; ``h0``, ``h_n``: ``(D·num_layers, N, H)``.
        - ``output``: ``(N, L, D·H)``, a batch-first view of a time-major buffer.
    """
    directions = 2 if rnn.bidirectional else 1
    inputs = x.transpose(0, 1)
    finals: list[Tensor] = []
    for layer in range(rnn.num_layers):
        outputs = []
        for index in range(directions):
            start = None if h0 is None else h0[layer * directions + index]
            weights = layer_weights(rnn, layer, index == 1)
            states, final = direction(inputs, start, weights, index == 1)
            outputs.append(states)
            finals.append(final)
        inputs = outputs[0] if directions == 1 else torch.cat(outputs, dim=2)
    return inputs.transpose(0, 1), torch.stack(finals)


def made_by(output: Tensor, function: type[torch.autograd.Function]) -> Any:
    """The node (``function``'s ``ctx``) whose states buffer ``output`` is, or views; else ``None``.

    Where that node saved the buffer for backward, modifying ``output`` in place would corrupt it.
    """
    base = output if output._base is None else output._base
    return base.grad_fn if isinstance(base.grad_fn, function._backward_cls) else None


def zeros_if_none(grad: Tensor | None, like: Tensor) -> Tensor:
    """An output's gradient, or zeros shaped as ``like`` where the output was not used."""
    return torch.zeros_like(like) if grad is None else grad


def summed_outer(grads: Tensor, inputs: Tensor) -> Tensor:
    """``gradsᵀ @ inputs``, ``(G, I)`` from ``(R, G)`` and ``(R, I)``: a weight's gradient.

    With few input features (``I`` at most half of ``G``), the BLAS forms the product faster
    as ``(inputsᵀ @ grads)ᵀ`` (measured in ``benchmarks/NOTES.md``), copied back into the
    parameter's layout: ``torch.autograd.grad`` returns a gradient as the kernel gives it, and
    torch's layers give contiguous ones.
    """
    if 2 * inputs.shape[1] <= grads.shape[1]:
        return (inputs.t() @ grads).t().contiguous()
    return grads.t() @ inputs
