"""The exceptions rnnkit raises.

Every rnnkit exception derives from :class:`RnnkitError`, so ``except rnnkit.RnnkitError``
catches them all. Each also derives from the built-in exception a user would expect
(:class:`ValueError` for bad input, :class:`RuntimeError` for a failed run), so code written
against plain PyTorch keeps working.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "CheckpointValueError",
    "CheckpointVersionError",
    "CheckpointWriteError",
    "CorruptCheckpointError",
    "ForeignCheckpointError",
    "KernelUnavailableError",
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


class CheckpointWriteError(CheckpointError):
    """Writing the checkpoint failed (disk full, permission denied, ...).

    The previous file at the target path, if any, is left untouched and no temporary file
    remains. The underlying :class:`OSError` is available as ``__cause__``.
    """


class CheckpointValueError(CheckpointError):
    """A value in the object to save is not plain, so a safe load could not read it back.

    Args:
        message: What was found, where, and how to convert it.
        key_path: Where the value sits, e.g. ``checkpoint['trainer']['rng'][1]``.
    """

    def __init__(self, message: str, *, key_path: str) -> None:
        super().__init__(message)
        self.key_path = key_path


class CheckpointNotFoundError(CheckpointError):
    """The checkpoint path does not exist or is not a regular file."""


class CorruptCheckpointError(CheckpointError):
    """The file is empty, truncated, damaged, or not a PyTorch file at all."""


class ForeignCheckpointError(CheckpointError):
    """The file is a readable PyTorch file, but not an rnnkit checkpoint.

    Examples: a bare ``model.state_dict()``, another library's checkpoint dict, or a file of
    pickled Python objects that a ``weights_only=True`` load refuses.
    """


class CheckpointVersionError(CheckpointError):
    """The checkpoint was written in a newer format than this rnnkit reads."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint was saved from a model of another class, config or parameter shapes."""


class KernelUnavailableError(RnnkitError, RuntimeError):
    """``kernel="rnnkit"`` was asked for, but rnnkit's kernel cannot run this call.

    The message names why (a hook on the layer, autocast, a packed batch, ...). Use
    ``kernel="auto"`` to fall back to torch's layer wherever the kernel cannot run.
    """


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
