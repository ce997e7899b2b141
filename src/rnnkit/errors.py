"""The exceptions rnnkit raises.

Every rnnkit exception derives from :class:`RnnkitError`, so ``except rnnkit.RnnkitError``
catches them all. Each also derives from the built-in exception a user would expect
(:class:`ValueError` for bad input, :class:`RuntimeError` for a failed run), so code written
against plain PyTorch keeps working.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "RnnkitError",
    "ShapeError",
    "TrainingDivergedError",
]


class RnnkitError(Exception):
    """Root of every exception raised by rnnkit."""


class ShapeError(RnnkitError, ValueError):
    """A tensor's shape, dtype or device breaks the shape contract.

    The message names the argument, the expected layout in symbols and numbers, the shape
    received and, where a common mistake is recognisable, a hint on how to fix it.
    """


class CheckpointError(RnnkitError, ValueError):
    """A checkpoint file cannot be written, read or applied."""


class TrainingDivergedError(RnnkitError, RuntimeError):
    """The training loss became NaN or infinite.

    Args:
        message: What happened and what to do next.
        epoch: The epoch (0-based) in which the loss diverged.
        step: The global optimisation step at which the loss diverged.
    """

    def __init__(self, message: str, *, epoch: int, step: int) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.step = step
