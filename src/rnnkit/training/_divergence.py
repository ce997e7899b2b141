"""Non-finite losses: checked at once on the CPU, deferred to the logging interval on CUDA."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from rnnkit.distributed import DistributedContext
from rnnkit.errors import TrainingDivergedError

__all__ = ["NanGuard"]


class NanGuard:
    """Watches the training losses for NaN or infinity (``on_nan``: ``"raise"`` or ``"skip"``).

    Args:
        on_nan: ``"raise"`` or ``"skip"``.
        device: The Trainer's device.
        distributed: The processes that decide together whether to skip a batch.
    """

    def __init__(self, on_nan: str, device: torch.device, distributed: DistributedContext) -> None:
        self.on_nan = on_nan
        self.device = device
        self.distributed = distributed
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)

    @property
    def sync(self) -> bool:
        """Check each loss at once on the CPU (free) or to skip batches; else deferred."""
        return self.device.type != "cuda" or self.on_nan == "skip"

    def finite(self, loss: Tensor, step: int) -> bool | None:
        """Whether the update with ``loss`` may go on (``None``: a non-finite loss to raise for).

        Deferred (CUDA with ``"raise"``): records the first non-finite ``step`` on the device
        and returns True; :meth:`first_bad_step` reads it later.
        """
        if not self.sync:
            bad = ~torch.isfinite(loss.detach()) & (self.first_bad < 0)
            self.first_bad = torch.where(bad, step, self.first_bad)
            return True
        finite = math.isfinite(float(loss.detach()))  # one read: cheaper than isfinite()
        if self.on_nan == "skip":  # under DDP all processes skip, or none (equal steps)
            finite = not self.distributed.any_rank(not finite)
        if finite:
            return True
        return None if self.on_nan == "raise" else False

    def first_bad_step(self) -> int | None:
        """The first step with a non-finite loss recorded on the device (a synchronisation)."""
        step = int(self.first_bad.item())
        return step if step >= 0 else None


def diverged(
    value: float, step: int, *, epoch: int, batch_idx: int, global_step: int, kept: list[Path]
) -> TrainingDivergedError:
    """The error for a non-finite loss, naming the latest checkpoint written before it."""
    where = f" The latest checkpoint written before it: {str(kept[0])!r}." if kept else ""
    what = "non-finite" if math.isnan(value) and step != global_step else repr(value)
    return TrainingDivergedError(
        f"The training loss became {what} at epoch {epoch}, step {step} (batch "
        f"{batch_idx} of the epoch). Training stopped; checkpoints written before "
        f"it are intact.{where} Hint: lower the learning rate, set grad_clip_norm=1.0, "
        "check the data for extreme values, or pass on_nan='skip' to skip such batches.",
        epoch=epoch,
        step=step,
    )
