"""The :class:`Trainer`: fit, evaluate and predict with callbacks, checkpoints and DDP.

The Trainer is one object that owns its parts by composition: the run state
(:class:`~rnnkit.training.RunState`, with its own ``state_dict``), the task that says what
training means for the model (:class:`~rnnkit.tasks.Task`), and the callbacks. The loops are
plain functions (``rnnkit.training._loops``) that call the Trainer's overridable steps::

    fit -> run_epoch -> train_loop -> training_step      (per training batch)
                     -> validate   -> evaluation_step    (per validation batch)

and read what the steps return (:class:`~rnnkit.training.StepOutput`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from rnnkit.callbacks import Callback, ProgressBar
from rnnkit.callbacks._log_keys import LogKeys
from rnnkit.data import Batch
from rnnkit.distributed import DistributedContext
from rnnkit.io._atomic import atomic_save
from rnnkit.io.checkpoint import make_checkpoint
from rnnkit.metrics import Metric
from rnnkit.tasks import Task, resolve_metrics, task_for
from rnnkit.training import _checkpointing as ckpt
from rnnkit.training import _loops, _setup, _steps
from rnnkit.training._batches import BatchSource, as_source
from rnnkit.training._checks import (
    check_callbacks,
    check_choice,
    check_int,
    check_misc,
    check_optimizer,
    check_ratio,
    check_task_options,
)
from rnnkit.training._divergence import NanGuard
from rnnkit.training._interrupts import InterruptShield
from rnnkit.training._optimizers import OPTIMIZERS, named_optimizer, resolve_device
from rnnkit.training._precision import Precision, resolve_precision
from rnnkit.training._state import RunState
from rnnkit.training._steps import StepOutput
from rnnkit.training.history import History

__all__ = ["OptimizerFactory", "SchedulerFactory", "Trainer"]

logger = logging.getLogger("rnnkit")

OptimizerFactory = Callable[[Any], torch.optim.Optimizer]
"""Builds the optimizer from the model's parameters: ``factory(model.parameters())``."""

SchedulerFactory = Callable[[torch.optim.Optimizer], Any]
"""Builds a learning-rate scheduler from the optimizer: ``factory(optimizer)``."""


class Trainer:
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
        run: The :class:`~rnnkit.training.RunState` of the current (or last) fit: epoch,
            position in it, data order, partial sums, generators; it has its own
            ``state_dict``.
        train_model: What the training steps call: ``model``, or its DDP wrapper under DDP
            (a forward through it averages the gradients over the processes).
        distributed: The :class:`~rnnkit.distributed.DistributedContext`: rank, world size
            and the collectives (which do nothing in one process).
        optimizer: Its optimizer, built when ``fit`` starts.
        scheduler: The learning-rate scheduler, or ``None``.
        scaler: The :class:`torch.amp.GradScaler` (a pass-through unless ``"16-mixed"``).
        history: The :class:`~rnnkit.History` of the current fit.
        callbacks: The callbacks, the progress bar included.
        last_train_metrics: The last epoch's training metrics.
        last_val_metrics: The last validation metrics.
        expected_log_keys: Set when ``fit`` starts, before ``on_fit_start``: the keys the
            epoch logs will hold (``keys``), whether nothing else can add one
            (``complete``: no overridden step, no task defined outside rnnkit, no callback
            whose :meth:`~rnnkit.Callback.log_keys` is ``None``) and whether there is
            validation data (``has_val``). :class:`~rnnkit.ModelCheckpoint` checks its
            ``monitor`` and file name fields against it.
        logged_metrics: The loss over the last ``log_every_n_steps`` batches, read at that
            interval, and the global step it was read at.
        interrupted: Whether the last ``fit`` ended by a KeyboardInterrupt.
        interrupt_checkpoint: The checkpoint it saved then (rank 0 writes it under DDP), or
            ``None``.
        task: The ``task`` argument (``None``: each model's own, see :attr:`task_of_fit`).
        train_source: The training batches of the current fit (after ``fast_dev_run`` and
            ``overfit_batches`` cut them).
        val_source: The validation batches, or ``None``.
        precision_plugin: The autocast regions and gradient scaler of ``precision``.
        nan_guard: Watches the losses for NaN or infinity (``on_nan``).

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
        check_optimizer(optimizer, OPTIMIZERS)
        check_choice("on_nan", on_nan, ("raise", "skip"))
        check_choice("scheduler_interval", scheduler_interval, ("epoch", "step"))
        check_ratio(teacher_forcing)
        check_misc(lr, grad_clip_norm, fast_dev_run, scheduler)
        check_callbacks(callbacks)
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = float(lr)
        self.optimizer_spec = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.loss_fn = loss
        self.metric_objects = resolve_metrics(metrics)
        self.distributed = DistributedContext.from_strategy(strategy, device=device)
        self.device = resolve_device(self.distributed.device)
        self.precision = resolve_precision(precision)
        self.precision_plugin = Precision(self.precision, self.device)
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
        self.model: nn.Module | None = None
        self.train_model: nn.Module | None = None
        self.interrupted = False
        self.interrupt_checkpoint: Path | None = None
        self._pending_state: dict[str, Any] | None = None
        self.interrupts = InterruptShield()
        self._evaluating: tuple[nn.Module, Task] | None = None
        self._fit_task: Task | None = None
        self.train_source: BatchSource | None = None
        self.val_source: BatchSource | None = None
        self._reset_run()

    def _reset_run(self) -> None:
        """Forget the previous run: a fresh run state, History and optimizer."""
        self.run = RunState()
        self.history = History()
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.scaler: torch.amp.GradScaler | None = None
        self.last_train_metrics: dict[str, float] = {}
        self.last_val_metrics: dict[str, float] = {}
        self.logged_metrics: dict[str, float] = {}
        self.num_training_batches: int | None = None
        self.expected_log_keys: LogKeys | None = None
        self.nan_guard = NanGuard(self.on_nan, self.device, self.distributed)

    # -- the run state, as attributes ----------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The current epoch, 0-based (after ``fit``: the number of epochs completed)."""
        return self.run.epoch

    @property
    def global_step(self) -> int:
        """Optimizer steps taken."""
        return self.run.global_step

    @property
    def should_stop(self) -> bool:
        """Set it to True (e.g. in a callback) to stop after the current epoch."""
        return self.run.should_stop

    @should_stop.setter
    def should_stop(self, value: bool) -> None:
        self.run.should_stop = bool(value)

    @property
    def skipped_batches(self) -> int:
        """Updates skipped for a non-finite loss (``on_nan="skip"``)."""
        return self.run.skipped_batches

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

    @property
    def task_of_fit(self) -> Task:
        """The task of the current (or last) fit."""
        if self._fit_task is None:
            raise RuntimeError("Trainer.task_of_fit: no fit has started; call fit() first.")
        return self._fit_task

    @property
    def evaluated(self) -> tuple[nn.Module, Task]:
        """The model and task the evaluation and prediction steps run.

        Those of ``evaluate`` or ``predict`` while one runs, else the fit's.
        """
        if self._evaluating is not None:
            return self._evaluating
        assert self.model is not None
        return self.model, self.task_of_fit

    # -- public entry points -------------------------------------------------------------------

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
                ``"last"``: the latest checkpoint in this run's folder, i.e. of the
                :class:`~rnnkit.ModelCheckpoint` among the callbacks, or, only when there is
                none, of an interrupted run in ``default_root_dir``; with none there yet,
                training starts afresh. The checkpoint must come from the same run: the model
                class and config, the training data (sizes and a fingerprint of a few
                samples) and the kind of optimizer must match, or it is refused before the
                model is touched. The optimizer's saved hyperparameters win over the
                Trainer's (a different ``lr`` is not used, with a warning naming both
                values), so that the run continues exactly.

        The data are constants to the model: tensors that require grad are detached, and
        floating inputs and targets are cast to the dtype of the model's first floating
        parameter (so a model converted with ``model.double()`` trains on the same data).
        Indexed data (a dataset, an ``(x, y)`` pair) are checked as a whole before training;
        the batches of a DataLoader or list are checked one by one as they are drawn
        (:meth:`rnnkit.tasks.Task.check_batch`), so a bad batch is named before a step runs
        on it.

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
            rnnkit.errors.CheckpointMismatchError: ``resume_from`` was written by another run:
                another model, training data or optimizer.

        Shapes:
            - train/val ``x``: ``(N, L, H_in)``; ``y``: ``(N,)`` class indices or
              ``(N, L, H_y)`` per-step targets; ``lengths``: ``(N,)``.
        """
        self.interrupted, self.interrupt_checkpoint = False, None
        task = self._task_for(model)
        _setup.prepare_fit(self, task, model, train, val)
        self._fit_task = task
        self.model = model.to(self.device)
        self.distributed.setup()
        checkpoint = _setup.read_resume_checkpoint(self, self.model, resume_from)
        _setup.setup_run(self, checkpoint)
        return _loops.run_fit(self)

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
        _setup.check_task(self, task, model, [("data", source.info())])
        _setup.check_distributed(self, task, [source], None)
        _setup.check_each_batch(task, model, [source])
        self.distributed.setup()
        with self._bound(model.to(self.device), task):
            return _loops.evaluation_loop(self, source)

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
            return _loops.prediction_loop(self, source)

    @contextlib.contextmanager
    def _bound(self, model: nn.Module, task: Task) -> Iterator[None]:
        """Run the evaluation or prediction steps on ``model`` and ``task``.

        See :attr:`evaluated`: the fit's model and task are never touched.
        """
        outer, self._evaluating = self._evaluating, (model, task)
        try:
            yield
        finally:
            self._evaluating = outer

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

    def configure_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """Build the optimizer for ``model`` (override for parameter groups and the like)."""
        spec = self.optimizer_spec
        if callable(spec):
            return spec(model.parameters())
        fused = ckpt.saved_fused(self._pending_state)
        return named_optimizer(spec, list(model.parameters()), self.lr, fused)

    # -- the overridable steps -----------------------------------------------------------------

    def run_epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch, validate, record it in the History, call the epoch hooks.

        Args:
            epoch: The epoch, 0-based.

        Returns:
            The epoch's logs: the History record plus what callbacks added.
        """
        return _loops.run_epoch(self, epoch)

    def train_loop(self) -> dict[str, float]:
        """Run the epoch's training batches (from the resume position) and average them.

        Returns:
            The epoch's training loss and metrics.
        """
        return _loops.train_loop(self)

    def training_step(self, batch: Batch, batch_idx: int) -> StepOutput:
        """One batch: forward, loss, backward and optimizer step (one per TBPTT window).

        An override must return the :class:`~rnnkit.training.StepOutput` of
        ``super().training_step(...)`` (or one it built): the epoch's loss and metrics are
        made of its ``"parts"``; add an average of your own with its ``record``. The values
        stay on the device (no host synchronisation).

        Args:
            batch: The batch, already on the Trainer's device.
            batch_idx: Its index in the epoch.

        Returns:
            ``{"loss": mean loss of the batch (0-dim tensor), "batch_size": N, "parts": ...}``.

        Shapes:
            - ``batch.x``: ``(N, L, H_in)``; ``batch.y``: ``(N,)`` or ``(N, L, H_y)``.
        """
        return _steps.training_step(self, batch, batch_idx)

    def optimizer_step(self, loss: Tensor) -> None:
        """Back-propagate ``loss`` and take one optimizer step (scaled, clipped as set)."""
        assert self.optimizer is not None
        assert self.scaler is not None
        assert self.model is not None
        torch.autograd.backward(self.scaler.scale(loss))
        if self.grad_clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip_norm)
        # From the update on, a Ctrl-C waits until the loop has committed the step.
        self.interrupts.hold()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.run.global_step += 1
        _loops.step_scheduler(self, {}, interval="step")

    def validate(self) -> dict[str, float]:
        """Run the validation data; call ``on_validation_end`` with the (unprefixed) metrics.

        Returns:
            The validation loss and metrics.
        """
        assert self.val_source is not None
        metrics = _loops.evaluation_loop(self, self.val_source)
        self.last_val_metrics = metrics
        _loops.call(self, "on_validation_end", metrics)
        return metrics

    def evaluation_step(self, batch: Batch) -> StepOutput:
        """One evaluation batch: loss and metrics (TBPTT windows carry the state).

        It runs the model and task of :attr:`evaluated`. An override returns the
        :class:`~rnnkit.training.StepOutput` of ``super().evaluation_step(batch)``, with any
        average of its own added by ``record``.

        Args:
            batch: The batch, on the Trainer's device.

        Returns:
            ``{"loss": mean loss of the batch, "batch_size": N, "parts": ...}``.

        Shapes:
            - ``batch.x``: ``(N, L, H_in)``; ``batch.y``: ``(N,)`` or ``(N, L, H_y)``.
        """
        return _steps.evaluation_step(self, batch)

    def prediction_step(self, batch: Batch) -> Tensor:
        """The model's output for one batch, float32 on the CPU.

        The task decides what that is: see :meth:`rnnkit.tasks.Task.predict`.

        Shapes:
            - ``batch.x``: ``(N, L, H_in)``; return: ``(N, C)`` or ``(N, L, H_y)``.
        """
        model, task = self.evaluated
        with self.precision_plugin.autocast():
            return task.predict(model, batch)

    # -- checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint holds besides the model, as plain types and tensors.

        Taken in the middle of a training step (an interrupt), it describes the state at the
        step's start, so that a resumed run repeats the step.

        Returns:
            A dict with ``"version"``, ``"epoch"`` and ``"position"`` (where to resume:
            batches done in that epoch), ``"global_step"``, ``"permutation"`` (this epoch's
            order or ``None``), ``"totals"`` (the epoch's partial sums), ``"optimizer"``,
            ``"scheduler"``, ``"scaler"``, ``"history"``, ``"rng"``, ``"should_stop"``,
            ``"skipped_batches"``, ``"batch_size"``, ``"world_size"``, ``"optimizer_class"``
            and ``"data"`` (the training data's sizes and fingerprint). Under DDP it is
            this process's view: rank 0's is the one saved.
        """
        scaler = self.scaler
        return {
            "version": ckpt.STATE_VERSION,
            **self.run.state_dict(self.device),
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "optimizer_class": None if self.optimizer is None else type(self.optimizer).__name__,
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "scaler": None if scaler is None or not scaler.is_enabled() else scaler.state_dict(),
            "history": self.history.state_dict(),
            "batch_size": self.batch_size,
            "world_size": self.distributed.world_size,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` at the start of the next :meth:`fit`.

        The optimizer and scheduler exist only once ``fit`` builds them, so the state is kept
        and applied then (``fit(resume_from=...)`` does this for you).

        Raises:
            rnnkit.errors.CheckpointError: The state lacks keys or has a newer version.
        """
        ckpt.check_state(state)
        self._pending_state = dict(state)

    def callback_states(self) -> dict[str, Any]:
        """``{key: callback.state_dict()}`` for the callbacks with state.

        The key is the class name, with ``_0``, ``_1``, ... appended when a class repeats.
        """
        return ckpt.callback_states(self.callbacks)

    def load_callback_states(self, states: Mapping[str, Any]) -> None:
        """Give each callback its state from :meth:`callback_states` (matched by key)."""
        ckpt.load_callback_states(self.callbacks, states)

    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Write a resumable checkpoint of the model and this run, atomically (rank 0 only).

        Under DDP the other processes write nothing (call it on every process or on rank 0).

        Args:
            path: The file; its folder must exist. An existing file is replaced only once the
                new one is completely written.

        Raises:
            RuntimeError: No fit has started (there is no model).
            rnnkit.errors.CheckpointError: The write failed (the previous file stays intact).
        """
        if self.model is None:
            raise RuntimeError("Trainer.save_checkpoint: no model yet; call fit() first.")
        if not self.distributed.is_global_zero:
            return
        checkpoint = make_checkpoint(self.model, self.state_dict(), self.callback_states())
        atomic_save(checkpoint, path)

    def resolve_resume_path(self, resume_from: str | os.PathLike[str]) -> Path | None:
        """The file ``resume_from`` names; for ``"last"``, the latest one found, or ``None``."""
        return ckpt.resolve_resume_path(resume_from, self.callbacks, self.default_root_dir)
