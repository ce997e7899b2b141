"""Per-epoch sums of the loss and metrics, kept on the device until the epoch ends.

:class:`EpochTotals` only appends each step's ``(sum, count)`` tensors to lists: no addition,
no dtype conversion and no host synchronisation per step. :meth:`EpochTotals.compute` stacks
them once, adds them in float64 and reads the means with one synchronisation; under DDP the
``(sum, count)`` pairs are added over the processes before dividing. Its state (the
per-step values so far) goes into mid-epoch checkpoints, so a resumed epoch ends with the very
same sums as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["EpochTotals", "Reduce"]

Reduce = Callable[[Mapping[str, tuple[float, float]]], dict[str, tuple[float, float]]]
"""Adds ``{name: (sum, count)}`` over processes (``DistributedContext.all_reduce_named_sums``)."""


class EpochTotals:
    """Step-by-step ``(sum, count)`` pairs per metric name, reduced once per epoch."""

    def __init__(self) -> None:
        self._sums: dict[str, list[Tensor]] = {}
        self._counts: dict[str, list[Tensor | float]] = {}

    def add(self, name: str, total: Tensor, count: Tensor | float) -> None:
        """Append one step's sum and count for ``name``.

        Shapes:
            - total, count: ``()``
        """
        if name not in self._sums:
            self._sums[name], self._counts[name] = [], []
        self._sums[name].append(total)
        self._counts[name].append(count)

    @property
    def names(self) -> list[str]:
        """The names seen so far, in order of first appearance."""
        return list(self._sums)

    def _reduced(self) -> tuple[list[float], list[float]]:
        """Sums and counts per name; every count is a whole number, so any order is exact."""
        names = list(self._sums)
        rows = [_stack64(self._sums[name]).sum() for name in names]
        rows += [_tensor_count(self._counts[name], self._sums[name][0]) for name in names]
        values = torch.stack(rows).tolist()
        plain = [
            math.fsum(float(c) for c in self._counts[n] if not isinstance(c, Tensor)) for n in names
        ]
        counts = [v + p for v, p in zip(values[len(names) :], plain, strict=True)]
        return values[: len(names)], counts

    def sums(self) -> dict[str, tuple[float, float]]:
        """``{name: (sum, count)}`` so far, with one host synchronisation."""
        if not self._sums:
            return {}
        sums, counts = self._reduced()
        names = self._sums
        return {name: (s, c) for name, s, c in zip(names, sums, counts, strict=True)}

    def compute(self, reduce: Reduce | None = None) -> dict[str, float]:
        """The mean per name (``NaN`` for a zero count), with one host synchronisation.

        Args:
            reduce: Adds the ``(sum, count)`` pairs over the processes before dividing; every
                process must call it, also one without a step. ``None``: this process only.
        """
        parts = self.sums() if reduce is None else reduce(self.sums())
        return {name: s / c if c else math.nan for name, (s, c) in parts.items()}

    def mean_since(self, name: str, start: int) -> tuple[float, int]:
        """The mean of ``name`` over the steps from index ``start`` on (one synchronisation).

        Returns:
            The mean (``NaN`` when there is no new step) and the index to start from next time.
        """
        sums, counts = self._sums.get(name, []), self._counts.get(name, [])
        if len(sums) <= start:
            return math.nan, start
        window = counts[start:]
        both = torch.stack([_stack64(sums[start:]).sum(), _tensor_count(window, sums[0])])
        total, tensor_count = both.tolist()
        count = tensor_count + math.fsum(float(c) for c in window if not isinstance(c, Tensor))
        return (total / count if count else math.nan), len(sums)

    def state_dict(self) -> dict[str, Any]:
        """The per-step values so far, as CPU tensors (plain types for a checkpoint)."""
        return {
            name: {
                "sums": _stack64(self._sums[name]).cpu(),
                "counts": [float(c) for c in self._counts[name]],
            }
            for name in self._sums
        }

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device) -> None:
        """Replace the values by those of :meth:`state_dict` (the sums moved to ``device``)."""
        self._sums = {name: list(part["sums"].to(device).unbind()) for name, part in state.items()}
        self._counts = {name: [float(c) for c in part["counts"]] for name, part in state.items()}


def _stack64(values: list[Tensor]) -> Tensor:
    """The 0-dim ``values`` as one float64 vector, each converted exactly.

    Values of one dtype (the usual case) are stacked first and converted once.
    """
    flat = [v.detach().reshape(()) for v in values]
    if len({v.dtype for v in flat}) == 1:
        return torch.stack(flat).to(torch.float64)
    return torch.stack([v.to(torch.float64) for v in flat])


def _tensor_count(counts: list[Tensor | float], like: Tensor) -> Tensor:
    tensors = [c for c in counts if isinstance(c, Tensor)]
    if not tensors:
        return torch.zeros((), dtype=torch.float64, device=like.device)
    return _stack64(tensors).sum()
