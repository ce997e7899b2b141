"""The Trainer's constructor arguments: every one checked before anything is built.

:func:`check_arguments` takes the arguments of ``Trainer.__init__`` by name, so a bad set-up
fails at construction with an error naming the argument, long before the first step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rnnkit.training._checks import (
    check_callbacks,
    check_choice,
    check_int,
    check_misc,
    check_optimizer,
    check_ratio,
    check_task_options,
)
from rnnkit.training._optimizers import OPTIMIZERS

__all__ = ["check_arguments"]


def check_arguments(args: Mapping[str, Any]) -> None:
    """Raise for any of ``Trainer.__init__``'s arguments (``args``: by name) out of place.

    Raises:
        ValueError: An argument out of range, an unknown optimizer or choice, or an option
            that the ``task`` takes instead.
        TypeError: An argument of the wrong type.
    """
    check_task_options(
        args["task"],
        loss=args["loss"],
        metrics=args["metrics"],
        tbptt_steps=args["tbptt_steps"],
        rollout_horizon=args["rollout_horizon"],
    )
    check_int("max_epochs", args["max_epochs"], 1)
    check_int("batch_size", args["batch_size"], 1)
    check_int("log_every_n_steps", args["log_every_n_steps"], 1)
    check_int("tbptt_steps", args["tbptt_steps"], 1, optional=True)
    check_int("rollout_horizon", args["rollout_horizon"], 1, optional=True)
    check_int("overfit_batches", args["overfit_batches"], 0)
    check_int("seed", args["seed"], 0, optional=True)
    check_optimizer(args["optimizer"], OPTIMIZERS)
    check_choice("on_nan", args["on_nan"], ("raise", "skip"))
    check_choice("scheduler_interval", args["scheduler_interval"], ("epoch", "step"))
    check_ratio(args["teacher_forcing"])
    check_misc(args["lr"], args["grad_clip_norm"], args["fast_dev_run"], args["scheduler"])
    check_callbacks(args["callbacks"])
