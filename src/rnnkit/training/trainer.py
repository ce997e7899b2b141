"""The :class:`Trainer`: fit, evaluate and predict with callbacks, checkpoints and DDP.

The Trainer owns its parts by composition (the run state, the task, the callbacks); its
methods are thin: the loops (``_loops``), steps (``_steps``), set-up (``_setup``,
``_options``), evaluation (``_evaluation``) and checkpoints (``_checkpointing``) are plain
functions of the Trainer in the private modules beside this one, and the loops call back the
Trainer's overridable steps::

    fit -> run_epoch -> train_loop -> training_step      (per training batch)
                     -> validate   -> evaluation_step    (per validation batch)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from rnnkit.callbacks import Callback, LogKeys, ProgressBar
from rnnkit.data import Batch
from rnnkit.distributed import DistributedContext
from rnnkit.metrics import Metric
from rnnkit.tasks import Task, resolve_metrics
from rnnkit.training import _checkpointing as ckpt
from rnnkit.training import _evaluation, _loops, _lr_find, _options, _setup, _stateful, _steps
from rnnkit.training._batches import BatchSource
from rnnkit.training._divergence import NanGuard
from rnnkit.training._interrupts import InterruptShield
from rnnkit.training._optimizers import resolve_device
from rnnkit.training._precision import Precision, resolve_precision
from rnnkit.training._state import RunState
from rnnkit.training._steps import StepOutput
from rnnkit.training.history import History

__all__ = ["OptimizerFactory", "SchedulerFactory", "Trainer"]


OptimizerFactory = Callable[[Any], torch.optim.Optimizer]
"""Builds the optimizer from the model's parameters: ``factory(model.parameters())``."""

SchedulerFactory = Callable[[torch.optim.Optimizer], Any]
"""Builds a learning-rate scheduler from the optimizer: ``factory(optimizer)``."""


class Trainer:
    """Train, evaluate and run recurrent models: the training loop, written once.

    ``fit`` trains a :class:`~rnnkit.SequenceClassifier` (cross-entropy on class indices) or a
    :class:`~rnnkit.Seq2SeqRegressor` (MSE on per-step targets, masked over padding) on a
    :class:`~rnnkit.data.SequenceDataset`, an ``(x, y)`` pair of tensors or NumPy arrays, or
    any :class:`~torch.utils.data.DataLoader` / re-iterable of batches. A dataset or tensors
    take the fast path: one seeded permutation per epoch, whole batches gathered by index (no
    per-sample ``__getitem__``, no collate). Every argument is checked here, and the data
    against the model when ``fit`` starts, so a bad set-up fails before the first step.

    Args:
        max_epochs: Epochs to train (a resumed run continues up to this many in all).
        batch_size: Sequences per batch (fast path; a DataLoader keeps its own); per process
            under DDP.
        optimizer: ``"adam"``, ``"adamw"`` (both fused on floating-point CPU/CUDA
            parameters), ``"sgd"``, ``"rmsprop"`` (built with ``lr``), or a callable
            ``params -> torch.optim.Optimizer`` (``lr`` unused), e.g.
            ``lambda p: torch.optim.Adam(p, lr=1e-3)`` for torch's default Adam.
        lr: Learning rate of a named optimizer.
        scheduler: ``None`` or ``optimizer -> LRScheduler``, stepped after every epoch
            (``ReduceLROnPlateau`` gets ``val_loss``, or ``loss`` without validation) or,
            with ``scheduler_interval="step"``, after every optimizer step.
        scheduler_interval: ``"epoch"`` or ``"step"``.
        loss: ``None`` (cross-entropy for classifiers, MSE over the valid steps for
            regressors) or ``loss(output, target) -> Tensor``; a regressor's gets only the
            valid steps of a padded batch, ``(M, H_y)``.
        metrics: Names (see :func:`rnnkit.metrics.get_metric`) or
            :class:`~rnnkit.metrics.Metric` objects; ``None``: ``["accuracy"]`` for
            classifiers, ``["mae"]`` for regressors.
        device: ``"auto"`` (CUDA when available, else the CPU) or a device; under DDP on
            GPUs, ``cuda:LOCAL_RANK``; with a context as ``strategy``, the context's.
        strategy: ``"auto"`` (:class:`~torch.nn.parallel.DistributedDataParallel` when
            ``torchrun`` started several processes, else one), ``"ddp"``, ``"single"``, or a
            :class:`~rnnkit.distributed.DistributedContext` (e.g. for another timeout). Each
            DDP step trains on ``batch_size × world_size`` sequences (see :doc:`/scaling`).
        precision: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"`` (CUDA only; loss scaling).
        grad_clip_norm: Clip the gradients' global 2-norm to this value; ``None``: no clipping.
        seed: Seeds Python, NumPy and torch when ``fit`` starts, and the Trainer's generators
            (data order, teacher-forcing coins): same seed and weights, same run (bitwise on
            the CPU). ``None``: the order comes from torch's global generator (so
            :func:`torch.manual_seed` also makes runs repeatable).
        callbacks: :class:`~rnnkit.Callback` objects, called in this order.
        progress: Add a :class:`~rnnkit.ProgressBar` (drawn only on a terminal).
        log_every_n_steps: Batches between reads of the loss from the device
            (:attr:`logged_metrics`, the progress bar); on CUDA no other per-step sync.
        teacher_forcing: Regressors: the probability of feeding the true input at each step
            (1.0: always; 0.0: free-running; in between, scheduled sampling through
            :meth:`~rnnkit.Seq2SeqRegressor.rollout`), or a schedule ``epoch -> ratio``.
        tbptt_steps: Regressors: truncated BPTT in windows of this many steps, one optimizer
            step per window, the state carried (detached) across windows, in validation
            too. ``None``: full BPTT.
        rollout_horizon: Regressors: also score free-running generation over this many
            steps in validation (``"val_rollout_mse"``), primed on the first
            ``L - horizon + 1`` steps (see :func:`rnnkit.metrics.rollout_error`).
        fast_dev_run: ``True`` (or n): one (n) batch(es) of training and validation for one
            epoch, to smoke-test a set-up.
        overfit_batches: Train on the first n batches only, unshuffled, every epoch (a model
            that cannot overfit them has a bug); 0: off.
        on_nan: A NaN/inf loss: ``"raise"`` :class:`~rnnkit.errors.TrainingDivergedError`;
            ``"skip"`` that batch's update, counted (``"skipped_batches"`` in the History).
        default_root_dir: Where an interrupted run saves its checkpoint when no
            :class:`~rnnkit.ModelCheckpoint` is among the callbacks.
        shuffle: Draw a new order every epoch (fast path only).
        task: What training means for the model, a :class:`~rnnkit.tasks.Task` (e.g.
            :class:`~rnnkit.tasks.ClassificationTask` for any module returning ``(N, C)``
            logits), which then takes ``loss``, ``metrics``, ``tbptt_steps`` and
            ``rollout_horizon`` instead (see :ref:`training-your-own-module`); ``None``:
            each rnnkit model's own (:func:`rnnkit.tasks.task_for`) with those four.
        stateful: Carry each batch's final state (detached) into the next, from zeros where
            a stream starts: the data are :func:`rnnkit.data.streams`'
            :class:`~rnnkit.data.StreamBatches`, the model a
            :class:`~rnnkit.Seq2SeqRegressor`. Checkpoints hold the carried state (exact
            resume); ``evaluate`` and ``predict`` on streams carry it too (:doc:`/stateful`).

    Raises:
        ValueError: An argument out of range; an unknown optimizer, precision, metric or
            strategy; ``strategy="ddp"`` outside ``torchrun``.
        TypeError: An argument of the wrong type.

    Attributes:
        model: The model of the current (or last) fit.
        run: The :class:`~rnnkit.training.RunState` of the current (or last) fit: epoch,
            position, data order, partial sums, generators; with its own ``state_dict``.
        train_model: What the training steps call: ``model``, or its DDP wrapper (whose
            forward averages the gradients over the processes).
        distributed: The :class:`~rnnkit.distributed.DistributedContext`: rank, world size,
            collectives (no-ops in one process).
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
        interrupt_checkpoint: The checkpoint it then saved (rank 0's under DDP), or ``None``.
        task: The ``task`` argument (``None``: each model's own, see :attr:`task_of_fit`).
        train_source: The current fit's training batches (as ``fast_dev_run`` and
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
        stateful: bool = False,
    ) -> None:
        _options.check_arguments(locals())
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
        self.stateful = bool(stateful)
        self.stream_carry: _stateful.StreamCarry | None = None
        self.eval_carry: _stateful.StreamCarry | None = None
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
        _setup.start_fit(self, model, train, val, resume_from)
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
        return _evaluation.evaluate(self, model, data)

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
        return _evaluation.predict(self, model, data)

    def lr_find(
        self,
        model: nn.Module,
        train: Any,
        *,
        min_lr: float = 1e-7,
        max_lr: float = 10.0,
        num_steps: int = 100,
        smoothing: float = 0.9,
        divergence_factor: float = 4.0,
    ) -> _lr_find.LRFinderResult:
        """The learning-rate range test: train briefly at exponentially growing rates.

        A copy of ``model`` takes up to ``num_steps`` optimizer steps (one per batch, or per
        TBPTT window) with the Trainer's optimizer, loss, precision and clipping, the rate
        growing geometrically from ``min_lr`` to ``max_lr``. The loss of every step is smoothed
        by a bias-corrected exponential moving average; the test stops early once the smoothed
        loss exceeds ``divergence_factor`` times the best so far, or a loss is NaN or infinite.
        ``model``, an optimizer from an earlier ``fit``, the run state and the global random
        generators are left exactly as they were. See :doc:`/lr_find`.

        Args:
            model: The model to probe (not modified).
            train: Training data in any form ``fit`` accepts (the batches cycle when there
                are fewer than ``num_steps``).
            min_lr: The rate of the first step.
            max_lr: The rate of the last step.
            num_steps: The most steps to take, at least 2.
            smoothing: The moving average's weight of the past, in [0, 1) (0: no smoothing;
                a heavier average is steadier but lags further behind the rate).
            divergence_factor: Stop once the smoothed loss exceeds this many times its best.

        Returns:
            The :class:`~rnnkit.training.LRFinderResult`: the curve and the suggested rate
            (steepest descent of the smoothed loss).

        Raises:
            TypeError: ``model`` is not an rnnkit model and the Trainer has no ``task``.
            ValueError: Settings out of range, data that do not fit the model, or a first
                loss that is already NaN or infinite.
            rnnkit.errors.ShapeError: The data have the wrong sequence width or target size.

        Example:
            >>> import torch
            >>> from rnnkit import SequenceClassifier, Trainer
            >>> x, y = torch.randn(64, 5, 3), torch.randint(0, 2, (64,))
            >>> trainer = Trainer(batch_size=16, progress=False, seed=0)
            >>> result = trainer.lr_find(SequenceClassifier(3, 2, 8), (x, y), num_steps=20)
            >>> len(result.lrs) <= 20 and result.lrs[0] == 1e-7
            True
        """
        test = _lr_find.RangeTest(min_lr, max_lr, num_steps, smoothing, divergence_factor)
        return _lr_find.run_lr_find(self, model, train, test)

    def configure_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """Build the optimizer for ``model`` (override for parameter groups and the like)."""
        return _setup.build_optimizer(self, model)

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
        _loops.optimizer_step(self, loss)

    def validate(self) -> dict[str, float]:
        """Run the validation data; call ``on_validation_end`` with the (unprefixed) metrics.

        Returns:
            The validation loss and metrics.
        """
        return _loops.validate(self)

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
        return _steps.prediction_step(self, batch)

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
            ``"skipped_batches"``, ``"batch_size"``, ``"world_size"``, ``"optimizer_class"``,
            ``"data"`` (the training data's sizes and fingerprint) and, with
            ``stateful=True``, ``"stream_state"`` (the carried state). Under DDP it is
            this process's view: rank 0's is the one saved.
        """
        return ckpt.trainer_state(self)

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
        ckpt.save_checkpoint(self, path)

    def resolve_resume_path(self, resume_from: str | os.PathLike[str]) -> Path | None:
        """The file ``resume_from`` names; for ``"last"``, the latest one found, or ``None``."""
        return ckpt.resolve_resume_path(resume_from, self.callbacks, self.default_root_dir)
