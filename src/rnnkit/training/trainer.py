"""The :class:`Trainer`: fit, evaluate and predict for rnnkit's models, with callbacks.

One trainer runs every kind of model a :class:`~rnnkit.tasks.Task` describes. It is a chain
of small methods a subclass can override::

    fit -> run_epoch -> training_step     (per training batch; returns a dict)
                     -> evaluation_step   (per validation batch; returns a dict)

and calls the :class:`~rnnkit.Callback` hooks in the documented order. The loops
and steps live in ``rnnkit.training._loops``; checkpoints, exact resume and failure handling
in ``rnnkit.training._state``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from rnnkit.callbacks import Callback, ProgressBar
from rnnkit.distributed import DistributedContext
from rnnkit.metrics import Metric
from rnnkit.tasks import DataInfo, Task, resolve_metrics, task_for
from rnnkit.training._batches import BatchSource, as_source
from rnnkit.training._checks import (
    check_choice,
    check_int,
    check_misc,
    check_optimizer,
    check_ratio,
    check_shardable,
    check_task_options,
    check_val_like_train,
)
from rnnkit.training._loops import TrainerLoops
from rnnkit.training._precision import Precision, resolve_precision
from rnnkit.training.history import History

__all__ = ["OptimizerFactory", "SchedulerFactory", "Trainer"]

OptimizerFactory = Callable[[Any], torch.optim.Optimizer]
"""Builds the optimizer from the model's parameters: ``factory(model.parameters())``."""

SchedulerFactory = Callable[[torch.optim.Optimizer], Any]
"""Builds a learning-rate scheduler from the optimizer: ``factory(optimizer)``."""

_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}

_FUSED = frozenset({"adam", "adamw"})
"""Named optimizers built with ``fused=True`` where every parameter allows it."""


def _named_optimizer(
    name: str, params: list[nn.Parameter], lr: float, fused: bool | None = None
) -> torch.optim.Optimizer:
    """``optimizer=name``: torch's optimizer; Adam and AdamW fused on CPU and CUDA.

    The fused kernel updates all parameters in one pass; its results differ from torch's
    default implementation only in the last bits. ``fused=False`` (a resumed run saved with
    the default implementation) keeps the default: a fused optimizer that loads an unfused
    state would hand the gradient scaler's arguments to the unfused update.
    """
    if name in _FUSED and fused is not False and _fusable(params):
        return _OPTIMIZERS[name](params, lr=lr, fused=True)
    return _OPTIMIZERS[name](params, lr=lr)


def _fusable(params: list[nn.Parameter]) -> bool:
    """Whether torch's fused Adam accepts these parameters (floating point, CPU or CUDA)."""
    return bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )


def _resolve_device(device: torch.device) -> torch.device:
    """The device the strategy chose, checked; CUDA with an explicit index."""
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise ValueError(
            f"Expected an available device, but got device={str(device)!r} and CUDA is not "
            "available here. Hint: device='auto' picks CUDA when present, else the CPU."
        )
    if str(device) == "cuda":  # no index: the current device, named explicitly
        return torch.device("cuda", torch.cuda.current_device())
    return device


class Trainer(TrainerLoops):
    """Train, evaluate and run recurrent models: the training loop, written once.

    ``fit`` trains a :class:`~rnnkit.SequenceClassifier` (cross-entropy on class indices) or a
    :class:`~rnnkit.Seq2SeqRegressor` (mean squared error on per-step targets, masked over
    padding). Data may be a :class:`~rnnkit.data.SequenceDataset`, an ``(x, y)`` pair of
    tensors or NumPy arrays, or any :class:`~torch.utils.data.DataLoader` / re-iterable of
    batches. With a dataset or tensors the Trainer takes the fast path: one seeded permutation
    per epoch and whole batches gathered by index (no per-sample ``__getitem__``, no collate).

    Every argument is checked here, and the data against the model when ``fit`` starts, so a
    bad set-up fails before the first step.

    Args:
        max_epochs: Epochs to train (a resumed run continues up to this many in all).
        batch_size: Sequences per batch (the fast path; a DataLoader keeps its own); per
            process under DDP.
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"``, ``"rmsprop"`` (built with ``lr``;
            Adam and AdamW with ``fused=True`` when the parameters are floating point on the
            CPU or CUDA), or a callable ``params -> torch.optim.Optimizer`` (then ``lr`` is not
            used; e.g. ``lambda p: torch.optim.Adam(p, lr=1e-3)`` for torch's default Adam).
        lr: Learning rate of a named optimizer.
        scheduler: ``None`` or a callable ``optimizer -> LRScheduler``, stepped after every
            epoch (``ReduceLROnPlateau`` gets ``val_loss``, or
            ``loss`` without validation) or, with ``scheduler_interval="step"``, after every
            optimizer step.
        scheduler_interval: ``"epoch"`` or ``"step"``.
        loss: ``None`` for the default (cross-entropy for classifiers, MSE over the valid steps
            for regressors), or ``loss(output, target) -> Tensor``; a regressor's loss gets only
            the valid steps of a padded batch, ``(M, H_y)``.
        metrics: Metric names (see :func:`rnnkit.metrics.get_metric`) or
            :class:`~rnnkit.metrics.Metric` objects; ``None``: ``["accuracy"]`` for classifiers,
            ``["mae"]`` for regressors.
        device: ``"auto"`` (CUDA when available, else the CPU), or a device. Under DDP on
            GPUs each process takes ``cuda:LOCAL_RANK``; with a context as ``strategy``, the
            context's device.
        strategy: ``"auto"`` (data-parallel with
            :class:`~torch.nn.parallel.DistributedDataParallel` when ``torchrun`` started
            more than one process, else one process), ``"ddp"``, ``"single"``, or a
            :class:`~rnnkit.distributed.DistributedContext` (e.g. for another process-group
            timeout). Under DDP ``batch_size`` is per process: each step trains on
            ``batch_size × world_size`` sequences (see :doc:`/scaling`).
        precision: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"`` (CUDA only; with loss scaling).
        grad_clip_norm: Clip the gradients' global 2-norm to this value; ``None``: no clipping.
        seed: Seeds Python, NumPy and torch at the start of ``fit`` and the Trainer's own
            generators (data order, teacher-forcing coins): the same seed and initial weights
            give the same run, bitwise on the CPU. ``None`` draws the order from torch's
            global generator (so :func:`torch.manual_seed` also makes runs repeatable).
        callbacks: :class:`~rnnkit.Callback` objects, called in this order.
        progress: Add a :class:`~rnnkit.ProgressBar` (drawn only on a terminal).
        log_every_n_steps: Batches between the moments the Trainer reads the loss from the
            device (:attr:`logged_metrics`, the progress bar); no other per-step host
            synchronisation happens on CUDA.
        teacher_forcing: Regressors: the probability of feeding the true input at each step
            (1.0, teacher forcing at every step; 0.0, free-running; in between, scheduled
            sampling through :meth:`~rnnkit.Seq2SeqRegressor.rollout`), or a schedule
            ``epoch -> ratio``.
        tbptt_steps: Regressors: truncated back-propagation through time in windows of this
            many steps, one optimizer step per window; the state is carried across windows
            (detached between them), in validation too. ``None``: full BPTT.
        rollout_horizon: Regressors: also score free-running generation over this many steps
            in validation (``"val_rollout_mse"``): the model primes on the first
            ``L - horizon + 1`` steps and generates the rest (see
            :func:`rnnkit.metrics.rollout_error`).
        fast_dev_run: ``True`` (or n): run one (n) batch(es) of training and validation for one
            epoch, to smoke-test a set-up.
        overfit_batches: Train on the first n batches only, unshuffled, every epoch (a model
            that cannot overfit them has a bug). 0 turns it off.
        on_nan: ``"raise"``: a NaN/inf loss stops training with
            :class:`~rnnkit.errors.TrainingDivergedError`; ``"skip"``: skip that batch's
            update, count it (``"skipped_batches"`` in the History) and go on.
        default_root_dir: Where an interrupted run saves its checkpoint when no
            :class:`~rnnkit.ModelCheckpoint` is among the callbacks.
        shuffle: Draw a new order every epoch (fast path only).
        task: What training means for the model (a :class:`~rnnkit.tasks.Task`, e.g.
            :class:`~rnnkit.tasks.ClassificationTask` for any module returning ``(N, C)``
            logits); ``None``: the task of each rnnkit model (:func:`rnnkit.tasks.task_for`)
            with ``loss``, ``metrics``, ``tbptt_steps`` and ``rollout_horizon``. With a task,
            those four go to the task instead (see :ref:`training-your-own-module`).

    Raises:
        ValueError: An argument out of range; an unknown optimizer, precision, metric or
            strategy; ``strategy="ddp"`` outside ``torchrun``.
        TypeError: An argument of the wrong type.

    Attributes:
        model: The model of the current (or last) fit.
        train_model: What the training steps call: ``model``, or its DDP wrapper under DDP
            (a forward through it averages the gradients over the processes).
        distributed: The :class:`~rnnkit.distributed.DistributedContext`: rank, world size
            and the collectives (which do nothing in one process).
        optimizer: Its optimizer, built when ``fit`` starts.
        scheduler: The learning-rate scheduler, or ``None``.
        scaler: The :class:`torch.amp.GradScaler` (a pass-through unless ``"16-mixed"``).
        history: The :class:`~rnnkit.History` of the current fit.
        epoch: The current epoch, 0-based (after ``fit``: the number of epochs completed).
        global_step: Optimizer steps taken.
        should_stop: Set it to True (e.g. in a callback) to stop after the current epoch.
        callbacks: The callbacks, the progress bar included.
        last_train_metrics: The last epoch's training metrics.
        last_val_metrics: The last validation metrics.
        logged_metrics: The loss over the last ``log_every_n_steps`` batches, read at that
            interval, and the global step it was read at.
        skipped_batches: Updates skipped for a non-finite loss (``on_nan="skip"``).
        interrupted: Whether the last ``fit`` ended by a KeyboardInterrupt.
        interrupt_checkpoint: The checkpoint it saved then (rank 0 writes it under DDP), or
            ``None``.

    Example:
        >>> import torch
        >>> from rnnkit import SequenceClassifier, Trainer
        >>> x, y = torch.randn(64, 5, 3), torch.randint(0, 2, (64,))
        >>> trainer = Trainer(max_epochs=2, batch_size=16, progress=False, seed=0)
        >>> history = trainer.fit(SequenceClassifier(3, 2, 8), (x, y))
        >>> len(history), sorted(history[-1])[:3]
        (2, ['accuracy', 'epoch', 'loss'])
    """

    def __init__(
        self,
        max_epochs: int = 10,
        batch_size: int = 32,
        *,
        optimizer: str | OptimizerFactory = "adam",
        lr: float = 1e-3,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        metrics: Sequence[str | Metric] | None = None,
        device: str | torch.device = "auto",
        strategy: str | DistributedContext = "auto",
        precision: str | int = "32",
        grad_clip_norm: float | None = None,
        seed: int | None = None,
        callbacks: Sequence[Callback] | None = None,
        progress: bool = True,
        log_every_n_steps: int = 50,
        teacher_forcing: float | Callable[[int], float] = 1.0,
        tbptt_steps: int | None = None,
        rollout_horizon: int | None = None,
        fast_dev_run: bool | int = False,
        overfit_batches: int = 0,
        on_nan: Literal["raise", "skip"] = "raise",
        default_root_dir: str | os.PathLike[str] = "runs",
        shuffle: bool = True,
        task: Task | None = None,
    ) -> None:
        check_task_options(
            task,
            loss=loss,
            metrics=metrics,
            tbptt_steps=tbptt_steps,
            rollout_horizon=rollout_horizon,
        )
        check_int("max_epochs", max_epochs, 1)
        check_int("batch_size", batch_size, 1)
        check_int("log_every_n_steps", log_every_n_steps, 1)
        check_int("tbptt_steps", tbptt_steps, 1, optional=True)
        check_int("rollout_horizon", rollout_horizon, 1, optional=True)
        check_int("overfit_batches", overfit_batches, 0)
        check_int("seed", seed, 0, optional=True)
        check_optimizer(optimizer, _OPTIMIZERS)
        check_choice("on_nan", on_nan, ("raise", "skip"))
        check_choice("scheduler_interval", scheduler_interval, ("epoch", "step"))
        check_ratio(teacher_forcing)
        check_misc(lr, grad_clip_norm, fast_dev_run, scheduler)
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = float(lr)
        self.optimizer_spec = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.loss_fn = loss
        self.metric_objects = resolve_metrics(metrics)
        self.distributed = DistributedContext.from_strategy(strategy, device=device)
        self.device = _resolve_device(self.distributed.device)
        self.precision = resolve_precision(precision)
        self._amp = Precision(self.precision, self.device)
        self.grad_clip_norm = grad_clip_norm
        self.seed = seed
        self.log_every_n_steps = log_every_n_steps
        self.teacher_forcing = teacher_forcing
        self.tbptt_steps = tbptt_steps
        self.rollout_horizon = rollout_horizon
        self.fast_dev_run = int(fast_dev_run)
        self.overfit_batches = overfit_batches
        self.on_nan = on_nan
        self.default_root_dir = Path(default_root_dir)
        self.shuffle = shuffle
        self.task = task
        self.callbacks = list(callbacks or [])
        if progress and not any(isinstance(cb, ProgressBar) for cb in self.callbacks):
            self.callbacks.append(ProgressBar())
        super().__init__()

    # -- public entry points ----------------------------------------------------------------

    @property
    def is_global_zero(self) -> bool:
        """Whether this process is rank 0, the one that writes files and prints (or alone)."""
        return self.distributed.is_global_zero

    @property
    def world_size(self) -> int:
        """The number of processes training together (1 without DDP)."""
        return self.distributed.world_size

    @property
    def global_batch_size(self) -> int:
        """The sequences per optimizer step over all processes, ``batch_size × world_size``."""
        return self.batch_size * self.world_size

    def fit(
        self,
        model: nn.Module,
        train: Any,
        val: Any = None,
        resume_from: str | os.PathLike[str] | None = None,
    ) -> History:
        """Train ``model`` on ``train``, validating on ``val`` after every epoch.

        Under DDP (see :doc:`/scaling`) every process calls ``fit`` with the same data: each
        trains on its share of every global batch, validates its part of ``val``, and gets
        the metrics of all processes together; only rank 0 writes files.

        Args:
            model: A :class:`~rnnkit.SequenceClassifier` or :class:`~rnnkit.Seq2SeqRegressor`,
                or any module the Trainer's ``task`` describes; moved to the Trainer's device.
            train: A :class:`~rnnkit.data.SequenceDataset`, an ``(x, y)`` or
                ``(x, y, lengths)`` tuple of tensors/arrays, or a re-iterable of batches.
            val: Validation data, in any of the same forms, or ``None``.
            resume_from: A checkpoint to continue from exactly (weights, optimizer, scheduler,
                epoch and position within it, RNG states, History, callback states), or
                ``"last"``: the latest checkpoint of the :class:`~rnnkit.ModelCheckpoint`
                among the callbacks (or of an interrupted run in ``default_root_dir``); with
                none there yet, training starts afresh.

        Returns:
            The :class:`~rnnkit.History`, one record per epoch. After a KeyboardInterrupt the
            run's state is saved as a resumable checkpoint (logged with how to resume) and the
            History so far is returned.

        Raises:
            TypeError: ``model`` is not an rnnkit model and the Trainer has no ``task``.
            ValueError: The data do not fit the model, or an option does not apply to it
                (under DDP: a DataLoader, or ``tbptt_steps`` with padded sequences); raised
                before any training.
            rnnkit.errors.ShapeError: The data have the wrong sequence width or target size.
            rnnkit.errors.TrainingDivergedError: The loss became NaN or infinite
                (``on_nan="raise"``).
            rnnkit.errors.CheckpointError: ``resume_from`` cannot be read or does not match.

        Shapes:
            - train/val ``x``: ``(N, L, H_in)``; ``y``: ``(N,)`` class indices or
              ``(N, L, H_y)`` per-step targets; ``lengths``: ``(N,)``.
        """
        self.interrupted, self.interrupt_checkpoint = False, None
        self._prepare_fit(model, train, val)
        checkpoint = self._read_resume_checkpoint(resume_from)
        self._setup_run(checkpoint)
        return self._run()

    def evaluate(self, model: nn.Module, data: Any) -> dict[str, float]:
        """The loss and metrics of ``model`` on ``data`` (in eval mode, without autograd).

        Under DDP call it on every process: each evaluates its part of ``data``, the sums are
        added over the processes, and every process returns the figures of the whole data.
        A callback may call it during ``fit``: the fit's model, task and state are left as
        they were.

        Args:
            model: An rnnkit model, or a module the Trainer's ``task`` describes; moved to the
                Trainer's device.
            data: Labelled data in any form ``fit`` accepts.

        Returns:
            ``{"loss": ..., <metric>: ...}`` (plus ``"rollout_mse"`` with ``rollout_horizon``),
            each averaged over all samples (per-step values: over all valid elements).

        Raises:
            TypeError: ``model`` is not an rnnkit model and the Trainer has no ``task``.
            ValueError: The data do not fit the model (or, under DDP, are a DataLoader).
            rnnkit.errors.ShapeError: The data have the wrong sequence width or target size.

        Shapes:
            - ``x``: ``(N, L, H_in)``; ``y``: ``(N,)`` or ``(N, L, H_y)``.
        """
        task = self._task_for(model)
        source = as_source(data, "data")
        self._check_setup(task, model, [("data", source.info())])
        self._check_distributed(task, [source])
        self.distributed.setup()
        with self._bound(model.to(self.device), task):
            return self._evaluation_loop(source)

    def predict(self, model: nn.Module, data: Any) -> Tensor:
        """Run ``model`` over ``data`` in order and return its outputs on the CPU.

        Under DDP every process predicts all of ``data`` (nothing is split or gathered).
        A callback may call it during ``fit``: the fit's model, task and state are left as
        they were.

        Args:
            model: An rnnkit model, or a module the Trainer's ``task`` describes; moved to the
                Trainer's device.
            data: Inputs: a tensor/array ``x``, a dataset, an ``(x, y)`` pair (targets
                ignored) or an iterable of batches.

        Returns:
            Classifier logits (take ``.argmax(-1)`` for classes), or a regressor's per-step
            predictions (zero at padded steps; batches of different lengths are zero-padded
            to the longest).

        Raises:
            rnnkit.errors.ShapeError: The inputs have the wrong sequence width.

        Shapes:
            - ``x``: ``(N, L, H_in)``.
            - return: ``(N, C)`` for a classifier; ``(N, L, H_y)`` for a regressor.
        """
        task = self.task or task_for(model, tbptt_steps=self.tbptt_steps)
        source = as_source(data, "data")
        task.check_inputs(model, source.info(), "data")
        with self._bound(model.to(self.device), task):
            return self._prediction_loop(source)

    @contextlib.contextmanager
    def _bound(self, model: nn.Module, task: Task) -> Iterator[None]:
        """Run the evaluation or prediction steps on ``model`` and ``task``.

        The fit's model, task and step records are put back afterwards: a callback may
        evaluate in the middle of a fit.
        """
        saved = self.model, self.__dict__.get("_task"), self._parts
        self.model, self._task = model, task
        try:
            yield
        finally:
            self.model, self._parts = saved[0], saved[2]
            if saved[1] is None:
                del self._task
            else:
                self._task = saved[1]

    # -- fit: preparation -------------------------------------------------------------------

    def _task_for(self, model: nn.Module) -> Task:
        """The Trainer's ``task``, or the one of rnnkit's ``model`` with the Trainer's options."""
        if self.task is not None:
            return self.task
        return task_for(
            model,
            loss=self.loss_fn,
            metrics=self.metric_objects,
            tbptt_steps=self.tbptt_steps,
            rollout_horizon=self.rollout_horizon,
        )

    def _check_setup(self, task: Task, model: nn.Module, infos: list[tuple[str, DataInfo]]) -> None:
        task.check_setup(model, infos, teacher_forcing=self.teacher_forcing != 1.0)

    def _prepare_fit(self, model: nn.Module, train: Any, val: Any) -> None:
        """Check model and data (before any training) and set up the batch sources."""
        task = self._task_for(model)
        train_source = as_source(train, "train")
        infos = [("train", train_source.info())]
        val_source = None if val is None else as_source(val, "val")
        if val_source is not None:
            infos.append(("val", val_source.info()))
            check_val_like_train(infos[0][1], infos[1][1])
        self._check_setup(task, model, infos)
        self._check_distributed(task, [train_source, val_source], infos[0][1])
        self._task = task
        self._train_source, self._val_source = self._limit_sources(train_source, val_source)
        self.model = model.to(self.device)
        self.distributed.setup()

    def _check_distributed(
        self, task: Task, sources: list[BatchSource | None], train: DataInfo | None = None
    ) -> None:
        if self.distributed.is_distributed:
            tbptt_steps = getattr(task, "tbptt_steps", None)
            check_shardable(sources, train, tbptt_steps, self.world_size)

    def _limit_sources(
        self, train: BatchSource, val: BatchSource | None
    ) -> tuple[BatchSource, BatchSource | None]:
        size = self.global_batch_size
        if self.fast_dev_run:
            n = self.fast_dev_run
            limited_val = None if val is None else val.limited(n, size)
            return train.limited(n, size), limited_val
        if self.overfit_batches:
            return train.limited(self.overfit_batches, size), val
        return train, val

    def _setup_run(self, checkpoint: dict[str, Any] | None) -> None:
        """Build optimizer, scheduler and scaler; restore a checkpoint or seed a fresh run."""
        assert self.model is not None
        self._reset_run()
        self.optimizer = self.configure_optimizer(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler = (
            None if self.scheduler_factory is None else self.scheduler_factory(self.optimizer)
        )
        self.scaler = self._amp.make_scaler()
        self._first_bad = torch.full((), -1, dtype=torch.int64, device=self.device)
        self.num_training_batches = self._train_source.num_batches(self.global_batch_size)
        self._restore_checkpoint(checkpoint)
        self.train_model = self.distributed.wrap_model(self.model)

    def configure_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """Build the optimizer for ``model`` (override for parameter groups and the like)."""
        spec = self.optimizer_spec
        if callable(spec):
            return spec(model.parameters())
        return _named_optimizer(spec, list(model.parameters()), self.lr, self._saved_fused())

    def _saved_fused(self) -> bool | None:
        """Whether the optimizer of the state to resume was fused; ``None`` for a fresh run."""
        state = self._pending_state
        optimizer = None if state is None else state.get("optimizer")
        groups = None if not isinstance(optimizer, dict) else optimizer.get("param_groups")
        if not groups:
            return None
        return bool(groups[0].get("fused"))
