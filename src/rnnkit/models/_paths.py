"""The length helpers behind an encoder's variable-length paths.

Which path a right-padded batch takes (cut, padded and gathered, or packed) depends on its
shortest and longest lengths (:func:`extent`); the padded paths zero the padded positions
(:func:`rnnkit.data.valid_mask`), pick each sequence's last valid step (:func:`gather_last`)
and restore the full length (:func:`pad_steps`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def gather_last(output: Tensor, lengths: Tensor) -> Tensor:
    """Pick each sequence's output at its last valid step, ``lengths - 1``.

    Args:
        output: Per-step values.
        lengths: Each sequence's valid length.

    Returns:
        The value at step ``lengths[n] - 1`` of every sequence ``n``.

    Shapes:
        - ``output``: ``(N, L, F)``; ``lengths``: ``(N,)``; return: ``(N, F)``.
    """
    index = (lengths.to(output.device, torch.long, non_blocking=True) - 1).view(-1, 1, 1)
    return output.gather(1, index.expand(-1, 1, output.shape[-1])).squeeze(1)


def extent(lengths: Tensor, steps: int) -> tuple[int, int]:
    """The shortest and longest valid lengths, which choose the fastest path.

    Reading them is a data-dependent graph break under ``torch.compile``; there the general
    padded or packed path runs over all ``steps`` instead, which gives the same result.
    """
    if torch.compiler.is_compiling():
        return 0, steps
    return int(lengths.min()), int(lengths.max())


def pad_steps(output: Tensor, steps: int) -> Tensor:
    """Zero-pad a cut ``(N, l, F)`` output back to ``steps`` steps."""
    missing = steps - output.shape[1]
    return output if missing == 0 else F.pad(output, (0, 0, 0, missing))
