"""The Trainer's settings: the less common ones as one record, every argument checked first.

:class:`TrainerOptions` holds the keyword arguments of :class:`~rnnkit.Trainer` that most runs
leave at their defaults; ``_TrainerKeywords`` types them as keywords of ``Trainer(...)``, so a
type checker still checks each one. :func:`build_options` checks every argument of
``Trainer(...)`` by name, so a bad set-up fails at construction with an error naming the
argument, long before the first step.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, TypedDict

import torch

from rnnkit._validate import check_bool, check_int, check_optional_int
from rnnkit.callbacks import Callback, ProgressBar
from rnnkit.distributed import DistributedContext
from rnnkit.training._checks import (
    check_callbacks,
    check_choice,
    check_misc,
    check_optimizer,
    check_ratio,
    check_task_options,
    check_weight_decay,
)
from rnnkit.training._optimizers import OPTIMIZERS
from rnnkit.training._precision import PrecisionName, resolve_precision

__all__ = [
    "OptimizerFactory",
    "SchedulerFactory",
    "TrainerOptions",
    "build_options",
    "check_arguments",
]

OptimizerFactory = Callable[[Any], torch.optim.Optimizer]
"""Builds the optimizer from the model's parameters: ``factory(model.parameters())``."""

SchedulerFactory = Callable[[torch.optim.Optimizer], Any]
"""Builds a learning-rate scheduler from the optimizer: ``factory(optimizer)``."""


@dataclass(frozen=True)
class TrainerOptions:
    """The Trainer's less common settings, as it holds them (:attr:`rnnkit.Trainer.options`).

    Each field is a keyword argument of :class:`~rnnkit.Trainer` with the same name and
    default, e.g. ``Trainer(max_epochs=5, tbptt_steps=20, precision="bf16-mixed")``; the
    Trainer checks it and keeps it here, normalised (``precision`` as a string,
    ``fast_dev_run`` as an int, ``default_root_dir`` as a :class:`~pathlib.Path`).

    Attributes:
        device: ``"auto"`` (default: CUDA when available, else the CPU) or a device; under
            DDP on GPUs, ``cuda:LOCAL_RANK``; with a context as ``strategy``, the context's.
        strategy: ``"auto"`` (default: :class:`~torch.nn.parallel.DistributedDataParallel`
            when ``torchrun`` started several processes, else one), ``"ddp"``, ``"single"``,
            or a :class:`~rnnkit.distributed.DistributedContext` (e.g. for another timeout).
            Each DDP step trains on ``batch_size × world_size`` sequences (see
            :doc:`/scaling`).
        precision: ``"32"`` (default), ``"bf16-mixed"`` or ``"16-mixed"`` (CUDA only; loss
            scaling).
        scheduler_interval: ``"epoch"`` (default) or ``"step"``: when the ``scheduler`` steps,
            after every epoch (``ReduceLROnPlateau`` gets ``val_loss``, or ``loss`` without
            validation) or after every optimizer step (not for ``ReduceLROnPlateau``, which
            needs the epoch's loss: refused when ``fit`` starts).
        grad_clip_norm: Clip the gradients' global 2-norm to this value; ``None`` (default):
            no clipping.
        log_every_n_steps: Batches between reads of the loss from the device
            (:attr:`~rnnkit.Trainer.logged_metrics`, the progress bar); on CUDA no other
            per-step sync. Default 50.
        teacher_forcing: Regressors: the probability of feeding the true input at each step
            (1.0, the default: always; 0.0: free-running; in between, scheduled sampling
            through :meth:`~rnnkit.Seq2SeqRegressor.rollout`), or a schedule
            ``epoch -> ratio``.
        tbptt_steps: Regressors: truncated BPTT in windows of this many steps, one optimizer
            step per window, the state carried (detached) across windows, in validation too.
            ``None`` (default): full BPTT. With a ``task``, set it on the task instead.
        rollout_horizon: Regressors: also score free-running generation over this many steps
            in validation (``"val_rollout_mse"``), primed on the first ``L - horizon + 1``
            steps (see :func:`rnnkit.metrics.rollout_error`); ``None`` (default): off. With a
            ``task``, set it on the task instead.
        fast_dev_run: ``True`` (or n): one (n) batch(es) of training and validation for one
            epoch, to smoke-test a set-up; 0 (``False``, default): off.
        overfit_batches: Train on the first n batches only, unshuffled, every epoch (a model
            that cannot overfit them has a bug); 0 (default): off.
        on_nan: A NaN/inf loss: ``"raise"`` (default)
            :class:`~rnnkit.errors.TrainingDivergedError`; ``"skip"`` that update (one TBPTT
            window's under ``tbptt_steps``), counted: ``"skipped_batches"`` in the History is
            the run's total so far.
        default_root_dir: Where an interrupted run saves its checkpoint when no
            :class:`~rnnkit.ModelCheckpoint` is among the callbacks (default ``"runs"``).
        shuffle: Draw a new order every epoch (fast path only); default ``True``.
        stateful: Carry each batch's final state (detached) into the next, from zeros where
            a stream starts: the data are :func:`rnnkit.data.streams`'
            :class:`~rnnkit.data.StreamBatches`, the model a
            :class:`~rnnkit.Seq2SeqRegressor`. Checkpoints hold the carried state (exact
            resume); ``evaluate`` and ``predict`` on streams carry it too
            (:doc:`/stateful`). Default ``False``.
    """

    device: str | torch.device = "auto"
    strategy: str | DistributedContext = "auto"
    precision: PrecisionName = "32"
    scheduler_interval: Literal["epoch", "step"] = "epoch"
    grad_clip_norm: float | None = None
    log_every_n_steps: int = 50
    teacher_forcing: float | Callable[[int], float] = 1.0
    tbptt_steps: int | None = None
    rollout_horizon: int | None = None
    fast_dev_run: int = 0
    overfit_batches: int = 0
    on_nan: Literal["raise", "skip"] = "raise"
    default_root_dir: Path = Path("runs")
    shuffle: bool = True
    stateful: bool = False


class _TrainerKeywords(TypedDict, total=False):
    """The keyword arguments that become :class:`TrainerOptions`, as ``Trainer(...)`` takes them.

    The same names as the fields of :class:`TrainerOptions` (a test holds them equal), with
    the types a caller may pass before they are normalised.
    """

    device: str | torch.device
    strategy: str | DistributedContext
    precision: str | int
    scheduler_interval: Literal["epoch", "step"]
    grad_clip_norm: float | None
    log_every_n_steps: int
    teacher_forcing: float | Callable[[int], float]
    tbptt_steps: int | None
    rollout_horizon: int | None
    fast_dev_run: bool | int
    overfit_batches: int
    on_nan: Literal["raise", "skip"]
    default_root_dir: str | os.PathLike[str]
    shuffle: bool
    stateful: bool


_DEFAULTS: dict[str, Any] = {field.name: field.default for field in fields(TrainerOptions)}


def build_options(explicit: Mapping[str, Any], keywords: Mapping[str, Any]) -> TrainerOptions:
    """Check every argument of ``Trainer(...)``; return its less common settings.

    Args:
        explicit: The Trainer's named parameters (``max_epochs``, ..., ``task``), by name.
        keywords: The keywords collected into ``**options``.

    Raises:
        TypeError: A keyword the Trainer does not take, or an argument of the wrong type.
        ValueError: An argument out of range, an unknown optimizer or choice, or an option
            that the ``task`` takes instead.
    """
    for name in keywords:
        if name not in _DEFAULTS:
            _refuse_keyword(name, [*_DEFAULTS, *explicit])
    settings = {name: keywords.get(name, _DEFAULTS[name]) for name in _DEFAULTS}
    check_arguments({**explicit, **settings})
    return TrainerOptions(
        **{
            **settings,
            "precision": resolve_precision(settings["precision"]),
            "fast_dev_run": int(settings["fast_dev_run"]),
            "default_root_dir": Path(settings["default_root_dir"]),
            "shuffle": bool(settings["shuffle"]),
            "stateful": bool(settings["stateful"]),
        }
    )


def _refuse_keyword(name: str, known: list[str]) -> None:
    """Raise the TypeError Python raises for an unknown keyword, with the closest names."""
    known = [option for option in known if option not in ("self", "options")]
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else "see help(Trainer)."
    raise TypeError(
        f"Trainer() got an unexpected keyword argument {name!r}: expected one of its named "
        f"parameters or a field of rnnkit.training.TrainerOptions. Hint: {hint}"
    )


def callbacks_with_bar(callbacks: Sequence[Callback] | None, progress: object) -> list[Callback]:
    """The callbacks, with a :class:`~rnnkit.ProgressBar` added for ``progress`` if none is.

    Raises:
        TypeError: ``progress`` is not a bool (``"False"`` is truthy).
    """
    listed = list(callbacks or [])
    if check_bool("progress", progress) and not any(isinstance(c, ProgressBar) for c in listed):
        listed.append(ProgressBar())
    return listed


def check_arguments(args: Mapping[str, Any]) -> None:
    """Raise for any of ``Trainer(...)``'s arguments (``args``: all of them, by name) out of place.

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
    check_int("overfit_batches", args["overfit_batches"], 0)
    check_optional_int("tbptt_steps", args["tbptt_steps"], 1)
    check_optional_int("rollout_horizon", args["rollout_horizon"], 1)
    check_optional_int("seed", args["seed"], 0)
    check_optimizer(args["optimizer"], OPTIMIZERS)
    check_weight_decay(args["weight_decay"], args["optimizer"])
    check_choice("on_nan", args["on_nan"], ("raise", "skip"))
    check_choice("scheduler_interval", args["scheduler_interval"], ("epoch", "step"))
    check_ratio(args["teacher_forcing"])
    check_misc(args["lr"], args["grad_clip_norm"], args["fast_dev_run"], args["scheduler"])
    check_callbacks(args["callbacks"])
    check_bool("shuffle", args["shuffle"])
    check_bool("stateful", args["stateful"])
