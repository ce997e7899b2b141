"""Which keys a fit's epoch logs will hold: :func:`expected_log_keys` (see ``LogKeys``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rnnkit.callbacks import LogKeys

if TYPE_CHECKING:
    from rnnkit.training.trainer import Trainer

__all__ = ["expected_log_keys"]

_STEPS = ("run_epoch", "train_loop", "training_step", "validate", "evaluation_step")
"""The Trainer's methods whose override may log keys the Trainer cannot know."""


def expected_log_keys(trainer: Trainer) -> LogKeys:
    """The keys the epochs of the fit now starting will log (see ``rnnkit.callbacks``).

    Call it once the task, the sources and the optimizer are set.
    """
    task = trainer.task_of_fit
    has_val = trainer.val_source is not None
    measured = ["loss", *(metric.name for metric in task.metrics)]
    keys = {"epoch", "lr", "time", *measured}
    if has_val:
        keys.update(f"val_{name}" for name in measured)
        if getattr(task, "rollout_horizon", None) is not None:
            keys.add("val_rollout_mse")
    if trainer.options.teacher_forcing != 1.0:
        keys.add("teacher_forcing")
    if trainer.options.on_nan == "skip":
        keys.add("skipped_batches")
    complete = _own(type(task)) and all(_own_method(trainer, name) for name in _STEPS)
    for callback in trainer.callbacks:
        declared = callback.log_keys(trainer)
        if declared is None:
            complete = False
        else:
            keys.update(declared)
    return LogKeys(frozenset(keys), complete, has_val)


def _own(cls: type) -> bool:
    return cls.__module__.startswith("rnnkit.")


def _own_method(trainer: Trainer, name: str) -> bool:
    """Whether ``trainer``'s ``name`` is rnnkit's own (not overridden in a user subclass)."""
    method = getattr(type(trainer), name)
    return str(getattr(method, "__module__", "")).startswith("rnnkit.")
