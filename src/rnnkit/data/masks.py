"""Which steps of a right-padded batch are real: the mask that every masked metric and loss takes.

A padded batch stores each sequence's true length in ``lengths``; :func:`valid_mask` turns
those into the ``(N, L)`` boolean mask that :func:`rnnkit.metrics.mse`, :func:`rnnkit.metrics.mae`
and :func:`rnnkit.metrics.accuracy` accept, and that rnnkit's own models, tasks and callbacks use.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit._validate import check_int, fmt_shape
from rnnkit.errors import ShapeError

__all__ = ["valid_mask"]

_INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def valid_mask(
    lengths: Tensor,
    steps: int | torch.SymInt | None = None,
    *,
    device: torch.device | str | None = None,
) -> Tensor:
    """Mark each sequence's valid steps: ``True`` where step ``t < lengths[n]``.

    Args:
        lengths: Each sequence's valid length, integers (a padded batch's ``lengths``).
        steps: The padded length L; ``None``: the longest length (0 for an empty batch).
            A symbolic size (while exporting or compiling) is taken as it is.
        device: Where the mask is needed; ``None``: the device of ``lengths``.

    Returns:
        A boolean mask, ``True`` at valid steps and ``False`` in the padding.

    Raises:
        TypeError: ``lengths`` is not an integer tensor, or ``steps`` not an int.
        ValueError: ``steps`` < 0.
        rnnkit.errors.ShapeError: ``lengths`` is not one-dimensional.

    Shapes:
        - ``lengths``: ``(N,)``; returns: ``(N, L)``.

    Example:
        >>> import torch
        >>> from rnnkit.data import valid_mask
        >>> valid_mask(torch.tensor([3, 1]), 4)
        tensor([[ True,  True,  True, False],
                [ True, False, False, False]])
    """
    _check_lengths(lengths)
    if steps is None:
        steps = int(lengths.max()) if lengths.numel() else 0
    if not isinstance(steps, torch.SymInt):  # a symbolic size while exporting is left as it is
        steps = check_int("steps", steps, 0)
    where = lengths.device if device is None else torch.device(device)
    positions = torch.arange(steps, device=where)
    return positions.unsqueeze(0) < lengths.to(where, non_blocking=True).unsqueeze(1)


def _check_lengths(lengths: object) -> None:
    """Refuse anything but a one-dimensional integer tensor."""
    if not isinstance(lengths, Tensor) or lengths.dtype not in _INTEGER_DTYPES:
        got = lengths.dtype if isinstance(lengths, Tensor) else type(lengths).__name__
        raise TypeError(
            f"Expected `lengths` to be an integer tensor, but got {got}. Hint: lengths count "
            "steps; pass torch.as_tensor(lengths, dtype=torch.int64)."
        )
    if lengths.dim() != 1:
        raise ShapeError(
            f"Expected `lengths` to have shape (N,), but got {fmt_shape(lengths)}. Hint: one "
            "length per sequence; flatten it."
        )
