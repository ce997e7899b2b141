"""Missing values (NaN) inside series: an error naming where, or a fill (internal).

``"error"`` names the first NaN's sample, step and channel; ``"ffill"`` carries the last
observed value of each channel forward (leading NaN take the first observed value);
``"zero"`` writes 0. Padding steps (beyond a sequence's length) are always set to 0 and never
count as missing. Infinite values are always an error: they are not "missing".
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = ["MissingPolicy", "fill_missing"]

MissingPolicy = Literal["error", "ffill", "zero"]
"""What :func:`rnnkit.data.from_arrays` does with NaN: raise, forward-fill, or write 0."""


def fill_missing(values: Tensor, valid: Tensor, policy: MissingPolicy) -> Tensor:
    """``values`` with padding zeroed and NaN handled by ``policy`` (a new tensor).

    Raises:
        ValueError: NaN under ``"error"``, an infinite value, or under ``"ffill"`` a channel of a
            sequence with no observed value.

    Shapes:
        - ``values``: ``(N, L, C)``; ``valid``: ``(N, L)`` (``True`` for real steps).
    """
    mask = valid.unsqueeze(-1)
    out = values.masked_fill(~mask, 0.0)
    _check_infinite(out)
    nan = torch.isnan(out)
    if not bool(nan.any()):
        return out
    if policy == "error":
        sample, step, channel = (int(i) for i in nan.nonzero()[0])
        raise ValueError(
            f"Expected `x` to hold no missing values, but sample {sample} has NaN at step "
            f"{step} (channel {channel}); {int(nan.sum())} NaN in all. Hint: pass "
            "missing='ffill' (carry the last value forward) or missing='zero', or clean the "
            "data first."
        )
    if policy == "zero":
        return out.masked_fill(nan, 0.0)
    return _forward_fill(out, nan, mask)


def _check_infinite(values: Tensor) -> None:
    inf = torch.isinf(values)
    if bool(inf.any()):
        sample, step, channel = (int(i) for i in inf.nonzero()[0])
        raise ValueError(
            f"Expected `x` to hold finite values, but sample {sample} has "
            f"{float(values[sample, step, channel])} at step {step} (channel {channel}). "
            "Hint: replace infinite values before building the dataset."
        )


def _forward_fill(values: Tensor, nan: Tensor, valid: Tensor) -> Tensor:
    """Carry each channel's last observed value forward; leading NaN take the first one."""
    observed = ~nan & valid
    empty = ~observed.any(dim=1)  # (N, C): nothing observed in this channel of this series
    if bool(empty.any()):
        sample, channel = (int(i) for i in empty.nonzero()[0])
        raise ValueError(
            f"Expected at least one observed value per channel for missing='ffill', but "
            f"sample {sample} has only NaN in channel {channel}. Hint: use missing='zero', or "
            "drop that series."
        )
    steps = torch.arange(values.shape[1]).view(1, -1, 1).expand_as(values)
    last = torch.where(observed, steps, torch.zeros_like(steps)).cummax(dim=1).values
    first = torch.where(observed, steps, torch.full_like(steps, values.shape[1])).amin(dim=1)
    seen = observed.long().cummax(dim=1).values.bool()
    source = torch.where(seen, last, first.unsqueeze(1).expand_as(last))
    filled = torch.gather(values, 1, source)
    return torch.where(valid, filled, torch.zeros_like(filled))
