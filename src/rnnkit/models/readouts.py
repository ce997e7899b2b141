"""Readouts: how a many-to-one model turns every step's output into one vector.

A readout maps the top layer's outputs ``(N, L, D·H_out)`` (zero at padded positions) and the
valid lengths to one feature vector per sequence, ``(N, D·H_out)``, which the classifier's
linear head turns into logits. Padded steps never reach a readout's result.

``"last"`` (the default)
    The final state of every direction: the forward direction at each sequence's last valid
    step, concatenated (for a bidirectional layer) with the backward direction at step 0, which
    is where the backward pass over the sequence ends. This equals the top layer's ``h_n``:
    ``h_n[-1]``, or ``cat(h_n[-2], h_n[-1])`` when bidirectional.
``"mean"``, ``"max"``
    The mean or the element-wise maximum over each sequence's valid steps.
``"output_last"``
    ``output[:, -1, :]``, the readout many tutorials use, kept so their results can be
    reproduced. It is the final state only for a unidirectional layer over unpadded sequences; see
    :doc:`/models` for why it is wrong otherwise. With ``lengths`` shorter than ``L`` it
    raises :class:`rnnkit.errors.ShapeError` rather than read padding.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

from rnnkit.errors import ShapeError
from rnnkit.models.encoder import gather_last, valid_mask

__all__ = [
    "READOUTS",
    "Readout",
    "apply_readout",
    "check_readout",
    "last_state",
    "max_over_valid",
    "mean_over_valid",
    "output_last",
]

Readout = Literal["last", "mean", "max", "output_last"]
"""The names accepted by ``readout=``."""

READOUTS: tuple[str, ...] = get_args(Readout)
"""Every accepted ``readout=`` name, in the documented order."""


def check_readout(readout: object) -> None:
    """Raise when ``readout`` is not a known readout name.

    Args:
        readout: The requested name.

    Raises:
        ValueError: ``readout`` is not one of :data:`READOUTS`.
    """
    if readout not in READOUTS:
        raise ValueError(f"Expected `readout` to be one of {READOUTS}, but got {readout!r}.")


def apply_readout(
    readout: Readout, output: Tensor, lengths: Tensor | None, *, hidden: int
) -> Tensor:
    """Reduce every sequence's outputs to one vector.

    Args:
        readout: ``"last"``, ``"mean"``, ``"max"`` or ``"output_last"``.
        output: The top layer's outputs, batch-first, zero at padded positions.
        lengths: Each sequence's valid length, or ``None`` when all are ``L``.
        hidden: H_out, the size of one direction's output (the split point between the
            forward and the backward halves of ``output``).

    Returns:
        One feature vector per sequence.

    Raises:
        rnnkit.errors.ShapeError: ``"output_last"`` with a sequence shorter than ``L``.

    Shapes:
        - ``output``: ``(N, L, D·H_out)``; ``lengths``: ``(N,)``.
        - return: ``(N, D·H_out)``.
    """
    if readout == "last":
        return last_state(output, lengths, hidden=hidden)
    if readout == "mean":
        return mean_over_valid(output, lengths)
    if readout == "max":
        return max_over_valid(output, lengths)
    return output_last(output, lengths)


def last_state(output: Tensor, lengths: Tensor | None, *, hidden: int) -> Tensor:
    """The final state of every direction (the ``"last"`` readout).

    Args:
        output: The top layer's outputs, batch-first.
        lengths: Each sequence's valid length, or ``None``.
        hidden: H_out, the size of one direction's output.

    Returns:
        Forward direction at step ``lengths - 1`` (``++`` backward direction at step 0).

    Shapes:
        - ``output``: ``(N, L, D·H_out)``; return: ``(N, D·H_out)``.
    """
    forward = output[..., :hidden]
    last = forward[:, -1] if lengths is None else gather_last(forward, lengths)
    if output.shape[-1] == hidden:
        return last
    return torch.cat([last, output[:, 0, hidden:]], dim=-1)


def mean_over_valid(output: Tensor, lengths: Tensor | None) -> Tensor:
    """The mean over each sequence's valid steps (the ``"mean"`` readout).

    Args:
        output: Per-step values, batch-first.
        lengths: Each sequence's valid length, or ``None``.

    Returns:
        The per-sequence mean.

    Shapes:
        - ``output``: ``(N, L, F)``; return: ``(N, F)``.
    """
    if lengths is None:
        return output.mean(dim=1)
    mask = valid_mask(lengths, output.shape[1], device=output.device).unsqueeze(-1)
    total = output.masked_fill(~mask, 0.0).sum(dim=1)
    return total / lengths.to(output.device, output.dtype, non_blocking=True).unsqueeze(-1)


def max_over_valid(output: Tensor, lengths: Tensor | None) -> Tensor:
    """The element-wise maximum over each sequence's valid steps (the ``"max"`` readout).

    Args:
        output: Per-step values, batch-first.
        lengths: Each sequence's valid length, or ``None``.

    Returns:
        The per-sequence maximum.

    Shapes:
        - ``output``: ``(N, L, F)``; return: ``(N, F)``.
    """
    if lengths is None:
        return output.amax(dim=1)
    mask = valid_mask(lengths, output.shape[1], device=output.device).unsqueeze(-1)
    return output.masked_fill(~mask, float("-inf")).amax(dim=1)


def output_last(output: Tensor, lengths: Tensor | None) -> Tensor:
    """``output[:, -1, :]``, a common tutorial readout (the ``"output_last"`` readout).

    Args:
        output: The top layer's outputs, batch-first.
        lengths: Each sequence's valid length, or ``None``.

    Returns:
        Every direction's output at the last step, ``L - 1``.

    Raises:
        rnnkit.errors.ShapeError: A sequence is shorter than ``L``: its step ``L - 1`` is padding.

    Shapes:
        - ``output``: ``(N, L, D·H_out)``; return: ``(N, D·H_out)``.
    """
    steps = output.shape[1]
    if lengths is not None and int(lengths.min()) < steps:
        raise ShapeError(
            f"Expected `lengths` to be None or all equal to L = {steps} with "
            f"readout='output_last', but got a shortest length of {int(lengths.min())}. "
            "Hint: 'output_last' reads output[:, -1, :], which is padding for every shorter "
            "sequence; use readout='last' (each sequence's own final state)."
        )
    return output[:, -1]
