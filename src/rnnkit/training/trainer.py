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
from typing import Any, Unpack

import torch
from torch import Tensor, nn

from rnnkit.callbacks import Callback, LogKeys
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
from rnnkit.training._options import OptimizerFactory, SchedulerFactory, _TrainerKeywords
from rnnkit.training._precision import Precision
from rnnkit.training._state import RunState
from rnnkit.training._steps import StepOutput
from rnnkit.training.history import History

__all__ = ["OptimizerFactory", "SchedulerFactory", "Trainer"]


class Trainer:
    """Train, evaluate and run recurrent models: the training loop, written once.

    ``fit`` trains rnnkit's models, or any module a ``task`` describes, on a
    :class:`~rnnkit.data.SequenceDataset`, tensors or arrays (the fast path: one seeded
    permutation per epoch, whole batches gathered by index) or any re-iterable of batches such
    as a :class:`~torch.utils.data.DataLoader`. Every argument is checked here, and the data
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
        weight_decay: A named optimizer's, as torch means it (decoupled for ``"adamw"``);
            ``None``: torch's default (0.01 for AdamW, else 0). Not with a callable optimizer.
        scheduler: ``None`` or ``optimizer -> LRScheduler``, stepped after every epoch or
            after every optimizer step (``scheduler_interval``).
        loss: ``None`` (cross-entropy for classifiers, MSE over the valid steps for
            regressors) or ``loss(output, target) -> Tensor``; a regressor's gets only the
            valid steps of a padded batch, ``(M, H_y)``.
        metrics: Names (see :func:`rnnkit.metrics.get_metric`) or
            :class:`~rnnkit.metrics.Metric` objects; ``None``: ``["accuracy"]`` for
            classifiers, ``["mae"]`` for regressors.
        seed: Seeds Python, NumPy and torch when ``fit`` starts, and the Trainer's generators
            (data order, teacher-forcing coins): same seed and weights, same run (bitwise on
            the CPU). ``None``: the order comes from torch's global generator (so
            :func:`torch.manual_seed` also makes runs repeatable).
        callbacks: :class:`~rnnkit.Callback` objects, called in this order, but every
            :class:`~rnnkit.ModelCheckpoint` last (it saves what the others did).
        progress: Add a :class:`~rnnkit.ProgressBar` (drawn only on a terminal).
        task: What training means for the model, a :class:`~rnnkit.tasks.Task` (e.g.
            :class:`~rnnkit.tasks.ClassificationTask` for any module returning ``(N, C)``
            logits), which then takes ``loss``, ``metrics``, ``tbptt_steps`` and
            ``rollout_horizon`` instead (see :ref:`training-your-own-module`); ``None``:
            each rnnkit model's own (:func:`rnnkit.tasks.task_for`) with those four.
        **options: The less common settings, each a field of
            :class:`~rnnkit.training.TrainerOptions` (which describes it and its default):
            ``device``, ``strategy``, ``precision``, ``scheduler_interval``, ``grad_clip_norm``,
            ``log_every_n_steps``, ``teacher_forcing``, ``tbptt_steps``, ``rollout_horizon``,
            ``fast_dev_run``, ``overfit_batches``, ``on_nan``, ``default_root_dir``,
            ``shuffle`` and ``stateful``. They are kept in :attr:`options`.

    Raises:
        ValueError: An argument out of range; an unknown optimizer, precision, metric or
            strategy; ``strategy="ddp"`` outside ``torchrun``.
        TypeError: An argument of the wrong type, or a keyword the Trainer does not take.

    Its attributes (:attr:`model`, :attr:`run`, :attr:`optimizer`, :attr:`history`, ...)
    are described with the class in the API reference.

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
        weight_decay: float | None = None,
        scheduler: SchedulerFactory | None = None,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        metrics: Sequence[str | Metric] | None = None,
        seed: int | None = None,
        callbacks: Sequence[Callback] | None = None,
        progress: bool = True,
        task: Task | None = None,
        **options: Unpack[_TrainerKeywords],
    ) -> None:
        opts = self.options = _options.build_options(locals(), options)
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = float(lr)
        self.weight_decay = None if weight_decay is None else float(weight_decay)
        self.optimizer_spec = optimizer
        self.scheduler_factory = scheduler
        self.loss_fn = loss
        self.metric_objects = resolve_metrics(metrics)
        self.distributed = DistributedContext.from_strategy(opts.strategy, device=opts.device)
        self.device = resolve_device(self.distributed.device)
        self.precision_plugin = Precision(opts.precision, self.device)
        self.seed = seed
        self.task = task
        self.stream_carry: _stateful.StreamCarry | None = None
        self.eval_carry: _stateful.StreamCarry | None = None
        self.callbacks = _options.callbacks_with_bar(callbacks, progress)
        self.model: nn.Module | None = None
        self.train_model: nn.Module | None = None
        self.interrupted = False
        self.interrupt_checkpoint: Path | None = None
        self._pending_state: dict[str, Any] | None = None
        self._callback_snapshot: _setup.RollBack | None = None  # until on_fit_start accepts
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
        self.nan_guard = NanGuard(self.options.on_nan, self.device, self.distributed)

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
        """The model and task the steps evaluate (a running evaluate/predict's, else the fit's)."""
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
            resume_from: A checkpoint to continue from exactly, or ``"last"``: the newest of
                this run's folder (the :class:`~rnnkit.ModelCheckpoint`'s, else
                ``default_root_dir``'s; none yet: a fresh start). Only the run that wrote it
                may resume it: another model, training data or optimizer is refused before the
                model is touched; the saved optimizer settings win (see :doc:`/checkpoints`).

        The data are constants to the model: tensors that require grad are detached, and
        floating inputs and targets take the dtype of the model's first floating parameter.
        Indexed data (a dataset, an ``(x, y)`` pair) are checked as a whole before training,
        the batches of an iterable as they are drawn (:meth:`rnnkit.tasks.Task.check_batch`).

        Returns:
            The :class:`~rnnkit.History`, one record per epoch. After a KeyboardInterrupt the
            run's state is saved as a resumable checkpoint (logged with how to resume; before
            the first step there is nothing to save) and the History so far is returned.

        Raises:
            TypeError: ``model`` is not an rnnkit model and the Trainer has no ``task``.
            ValueError: The data do not fit the model, or an option does not apply to it
                (under DDP: a DataLoader, or ``tbptt_steps`` with padded sequences); raised
                before any training.
            rnnkit.errors.ShapeError: The data have the wrong sequence width or target size.
            rnnkit.errors.TrainingDivergedError: The loss became NaN or infinite
                (``on_nan="raise"``).
            rnnkit.errors.CheckpointError: ``resume_from`` cannot be read, or (a
                :class:`~rnnkit.errors.CheckpointMismatchError`) was written by another run.

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
            predictions (zero at padded steps, and as long as the data's L; batches of an
            iterable of different lengths are zero-padded to the longest).

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

        A copy of ``model`` trains on up to ``num_steps`` batches (each TBPTT window steps at
        its batch's rate) with the Trainer's optimizer, loss, precision and clipping, the rate
        growing geometrically from ``min_lr`` to ``max_lr``, until the smoothed loss diverges.
        ``model``, the Trainer's state and the global random generators are left exactly as
        they were. The guide is :doc:`/lr_find`.

        Args:
            model: The model to probe (not modified).
            train: Training data in any form ``fit`` accepts (the batches cycle when there
                are fewer than ``num_steps``).
            min_lr: The rate of the first step.
            max_lr: The rate of the last step.
            num_steps: The most batches (rates) to try, at least 2.
            smoothing: The moving average's weight of the past, in [0, 1) (0: no smoothing;
                a heavier average is steadier but lags further behind the rate).
            divergence_factor: Stop once the smoothed loss passes its best by (this-1)·abs(best).

        Returns:
            The :class:`~rnnkit.training.LRFinderResult`: the curve and the suggested rate
            (steepest descent of the smoothed loss).

        Raises:
            TypeError: ``model`` is not an rnnkit model and the Trainer has no ``task``.
            ValueError: Settings out of range, data that do not fit the model, or a first
                loss that is already NaN or infinite.
            rnnkit.errors.ShapeError: The data have the wrong sequence width or target size.
        """
        test = _lr_find.RangeTest(min_lr, max_lr, num_steps, smoothing, divergence_factor)
        return _lr_find.run_lr_find(self, model, train, test)

    def configure_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """Build the optimizer for ``model`` (override for parameter groups and the like)."""
        return _setup.build_optimizer(self, model)

    # -- the overridable steps -----------------------------------------------------------------

    def run_epoch(self, epoch: int) -> dict[str, float]:
        """Train epoch ``epoch`` (0-based), validate, record it in the History, call the hooks.

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

        It returns a :class:`~rnnkit.training.StepOutput` (the batch's mean loss, its size,
        and the ``"parts"`` that make the epoch's loss and metrics, kept on the device); an
        override returns that of ``super()``, or one it built.

        Args:
            batch: The batch, already on the Trainer's device.
            batch_idx: Its index in the epoch.
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

        It runs the model and task of :attr:`evaluated` on ``batch`` (on the Trainer's device)
        and returns a :class:`~rnnkit.training.StepOutput`, as :meth:`training_step` does.
        """
        return _steps.evaluation_step(self, batch)

    def prediction_step(self, batch: Batch) -> Tensor:
        """The model's output for one batch, float32 on the CPU.

        The task decides what that is (see :meth:`rnnkit.tasks.Task.predict`): for rnnkit's
        models ``(N, C)`` logits, ``(N, L, C)`` per-step logits or ``(N, L, H_y)`` values.
        """
        return _steps.prediction_step(self, batch)

    # -- checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint holds besides the model, as plain types and tensors.

        Taken in the middle of a training step (an interrupt), it describes the state at the
        step's start, so that a resumed run repeats the step.

        Returns:
            The keys of :meth:`RunState.state_dict <rnnkit.training.RunState.state_dict>`
            (where to resume, the epoch's order and partial sums, the generators) and
            ``"version"``, ``"optimizer"``, ``"optimizer_class"``, ``"scheduler"``,
            ``"scaler"``, ``"history"``, ``"batch_size"``, ``"world_size"`` and, with
            ``stateful=True``, ``"stream_state"`` (the carried state). Under DDP it is this
            process's view: rank 0's is the one saved.
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
        return ckpt.resolve_resume_path(resume_from, self.callbacks, self.options.default_root_dir)
