"""Preparing a fit: checks before any work, batch sources, optimizer, resume or seeding.

Plain functions of the :class:`~rnnkit.Trainer`, called by ``fit``, ``evaluate`` and
``predict`` in that order: the task and the data are checked first, so a bad set-up fails
before the first step.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from copy import deepcopy
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from rnnkit.callbacks import Callback
from rnnkit.data import Batch
from rnnkit.errors import CheckpointError
from rnnkit.io.checkpoint import check_compatible, load_checkpoint
from rnnkit.tasks import DataInfo, Task, task_for
from rnnkit.training import _stateful
from rnnkit.training._batches import BatchSource, IterableSource, as_source
from rnnkit.training._checkpointing import (
    callbacks_with_state,
    check_resume_layout,
    check_scheduler_state,
    load_callback_states,
    load_optimizers,
    resolve_resume_path,
    saved_fused,
)
from rnnkit.training._checks import check_shardable, check_val_like_train
from rnnkit.training._data_card import apply_data_card, check_data_card
from rnnkit.training._log_keys import expected_log_keys
from rnnkit.training._optimizers import named_optimizer
from rnnkit.training._resume_checks import check_data, check_optimizer_state, data_signature
from rnnkit.training._rng import seed_everything
from rnnkit.training._state import RunState

if TYPE_CHECKING:
    from rnnkit.training.trainer import Trainer

__all__ = [
    "RollBack",
    "build_optimizer",
    "check_distributed",
    "check_each_batch",
    "check_plateau_interval",
    "check_task",
    "prepare_fit",
    "read_resume_checkpoint",
    "roll_back_refused_fit",
    "setup_run",
    "start_fit",
    "trainer_task",
]


def trainer_task(trainer: Trainer, model: nn.Module) -> Task:
    """The Trainer's ``task``, or the one of rnnkit's ``model`` with the Trainer's options."""
    trainer.precision_plugin.check_model(model)
    if trainer.task is not None:
        return trainer.task
    return task_for(
        model,
        loss=trainer.loss_fn,
        metrics=trainer.metric_objects,
        tbptt_steps=trainer.options.tbptt_steps,
        rollout_horizon=trainer.options.rollout_horizon,
    )


def start_fit(
    trainer: Trainer,
    model: nn.Module,
    train: Any,
    val: Any,
    resume_from: str | os.PathLike[str] | None,
) -> None:
    """Everything ``fit`` does before the first epoch: checks, model, resume or seeding.

    A fit refused here leaves the state kept for the next fit (:meth:`Trainer.load_state_dict
    <rnnkit.Trainer.load_state_dict>`) as it was: a refused resume is not half taken up by
    the next plain ``fit``.
    """
    trainer.interrupted, trainer.interrupt_checkpoint = False, None
    kept = trainer._pending_state
    trainer._callback_snapshot = (kept, [])  # until on_fit_start accepts (roll_back_refused_fit)
    try:
        _start_fit(trainer, model, train, val, resume_from)
    except BaseException:
        roll_back_refused_fit(trainer)  # states and weights a refused resume had loaded
        trainer._pending_state = kept
        raise


def _start_fit(
    trainer: Trainer,
    model: nn.Module,
    train: Any,
    val: Any,
    resume_from: str | os.PathLike[str] | None,
) -> None:
    task = trainer_task(trainer, model)
    if trainer.options.stateful:
        _stateful.check_stateful(trainer, task, model, train, val)
    prepare_fit(trainer, task, model, train, val)
    trainer._fit_task = task
    trainer.model = model.to(trainer.device)
    trainer.distributed.setup()
    checkpoint = read_resume_checkpoint(trainer, trainer.model, resume_from)
    card = check_data_card(trainer.model, train, checkpoint)  # before any state is taken
    if checkpoint is not None:
        trainer.load_state_dict(checkpoint["trainer"])
    pending = trainer._pending_state
    setup_run(trainer, checkpoint)
    apply_data_card(trainer.model, card)  # labels and scalers saved with the model
    trainer.stream_carry = _stateful.fit_carry(trainer, pending)


def build_optimizer(trainer: Trainer, model: nn.Module) -> torch.optim.Optimizer:
    """The body of ``Trainer.configure_optimizer``: the factory's, or the named one."""
    spec = trainer.optimizer_spec
    if callable(spec):
        return spec(model.parameters())
    fused = saved_fused(trainer._pending_state)
    params = list(model.parameters())
    return named_optimizer(spec, params, trainer.lr, fused, trainer.weight_decay)


def check_task(
    trainer: Trainer, task: Task, model: nn.Module, infos: list[tuple[str, DataInfo]]
) -> None:
    """The task's checks of the model and the data sets, with the Trainer's options."""
    task.check_setup(model, infos, teacher_forcing=trainer.options.teacher_forcing != 1.0)


def check_distributed(
    trainer: Trainer, task: Task, sources: list[BatchSource | None], train: DataInfo | None
) -> None:
    """Under DDP: raise for data rnnkit cannot split over the processes."""
    if trainer.distributed.is_distributed:
        tbptt_steps = getattr(task, "tbptt_steps", None)
        check_shardable(sources, train, tbptt_steps, trainer.world_size)


def prepare_fit(trainer: Trainer, task: Task, model: nn.Module, train: Any, val: Any) -> None:
    """Check model and data (before any training) and set up the batch sources."""
    train_source = as_source(train, "train")
    infos = [("train", train_source.info())]
    val_source = None if val is None else as_source(val, "val")
    if val_source is not None:
        infos.append(("val", val_source.info()))
        check_val_like_train(infos[0][1], infos[1][1])
    check_task(trainer, task, model, infos)
    check_distributed(trainer, task, [train_source, val_source], infos[0][1])
    trainer.train_source, trainer.val_source = _limit_sources(trainer, train_source, val_source)
    check_each_batch(task, model, [trainer.train_source, trainer.val_source])


def check_each_batch(task: Task, model: nn.Module, sources: list[BatchSource | None]) -> None:
    """Have every batch of a DataLoader or list checked by the task as it is drawn.

    Indexed data were checked as a whole by :func:`check_task`, so the fast path pays nothing
    per batch.
    """
    for source in sources:
        if isinstance(source, IterableSource):
            source.check = functools.partial(_check_batch, task, model, source.name)


def _check_batch(task: Task, model: nn.Module, name: str, batch: Batch, index: int) -> None:
    task.check_batch(model, batch, name, index)


def _limit_sources(
    trainer: Trainer, train: BatchSource, val: BatchSource | None
) -> tuple[BatchSource, BatchSource | None]:
    size = trainer.global_batch_size
    if trainer.options.fast_dev_run:
        n = trainer.options.fast_dev_run
        return train.limited(n, size), None if val is None else val.limited(n, size)
    if trainer.options.overfit_batches:
        return train.limited(trainer.options.overfit_batches, size), val
    return train, val


def read_resume_checkpoint(
    trainer: Trainer, model: nn.Module, resume_from: str | os.PathLike[str] | None
) -> dict[str, Any] | None:
    """Load and check the checkpoint to resume from (``None``: a fresh run).

    Under DDP rank 0 picks the file and every process reads it. Nothing is taken from it
    here: the caller gives ``checkpoint["trainer"]`` to the Trainer once all checks passed.

    Raises:
        rnnkit.errors.CheckpointError: The file is missing, corrupt, foreign or mismatched.
    """
    path = None
    if resume_from is not None and trainer.distributed.is_global_zero:
        path = resolve_resume_path(resume_from, trainer.callbacks, trainer.options.default_root_dir)
    path = trainer.distributed.broadcast_object(path)
    if path is None:
        return None
    checkpoint = load_checkpoint(path, map_location="cpu")
    check_compatible(checkpoint, model)
    return checkpoint


def check_built_scheduler(scheduler: object, optimizer: torch.optim.Optimizer) -> None:
    """Refuse what a ``scheduler`` factory returned unless it schedules ``optimizer``.

    Raises:
        TypeError: Not a learning-rate scheduler (a dict, the optimizer, ...), or one built on
            another optimizer.
    """
    schedulers = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    if scheduler is None or (
        isinstance(scheduler, schedulers) and getattr(scheduler, "optimizer", None) is optimizer
    ):
        return
    raise TypeError(
        "Expected `scheduler` to return a learning-rate scheduler of the optimizer it is "
        f"given, but it returned {type(scheduler).__name__} {scheduler!r:.80}. Hint: "
        "scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=5) returns "
        "the scheduler itself, built on `opt`."
    )


def check_plateau_interval(scheduler: object, interval: str) -> None:
    """Refuse ``ReduceLROnPlateau`` stepped per optimizer step, where no metric exists.

    Raises:
        ValueError: ``scheduler_interval="step"`` with a ``ReduceLROnPlateau``.
    """
    if interval == "step" and isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        raise ValueError(
            "Expected `scheduler_interval='epoch'` for a ReduceLROnPlateau scheduler, but got "
            "'step': it is stepped with the epoch's val_loss (or loss), which a single "
            "optimizer step does not have. Hint: drop scheduler_interval, or use a per-step "
            "schedule such as OneCycleLR."
        )


def setup_run(trainer: Trainer, checkpoint: dict[str, Any] | None) -> None:
    """Build optimizer, scheduler and scaler; restore a checkpoint or seed a fresh run."""
    model = trainer.model
    assert model is not None
    pending = trainer._pending_state
    trainer._reset_run()
    trainer.optimizer = trainer.configure_optimizer(model)  # reads the pending state's "fused"
    trainer._pending_state = None
    trainer.optimizer.zero_grad(set_to_none=True)
    factory = trainer.scheduler_factory
    trainer.scheduler = None if factory is None else factory(trainer.optimizer)
    check_built_scheduler(trainer.scheduler, trainer.optimizer)
    check_plateau_interval(trainer.scheduler, trainer.options.scheduler_interval)
    trainer.scaler = trainer.precision_plugin.make_scaler()
    assert trainer.train_source is not None
    trainer.num_training_batches = trainer.train_source.num_batches(trainer.global_batch_size)
    trainer.run.data_signature = data_signature(trainer.train_source)
    if pending is not None:  # everything is checked before the model takes anything
        check_resume_layout(pending, trainer.batch_size, trainer.world_size)
        check_data(pending.get("data"), trainer.run.data_signature)
        check_optimizer_state(pending, trainer.optimizer)
        _stateful.check_carry_resumable(pending, trainer.options.stateful)
        check_scheduler_state(pending, trainer.scheduler)
    if checkpoint is not None:  # the callbacks check their states before the model changes
        _keep_for_roll_back(
            trainer, callbacks_with_state(trainer.callbacks, checkpoint["callbacks"])
        )
        load_callback_states(trainer.callbacks, checkpoint["callbacks"])
    if pending is None:
        _seed_run(trainer, trainer.run)
    else:  # before the weights: a damaged state is refused with the model as it was
        _load_trainer_state(trainer, pending)
    if checkpoint is not None:
        _keep_for_roll_back(trainer, [model])  # a refusal in on_fit_start puts them back
        model.load_state_dict(checkpoint["model"]["state_dict"])
    trainer.train_model = trainer.distributed.wrap_model(model)
    trainer.expected_log_keys = expected_log_keys(trainer)  # read by callbacks' on_fit_start


def _load_trainer_state(trainer: Trainer, pending: dict[str, Any]) -> None:
    """Load the optimizer, scheduler, scaler, History and run state of a resumed fit.

    Raises:
        rnnkit.errors.CheckpointError: A part of the state is damaged (a value of the wrong
            type or layout), named with torch's or Python's own message.
    """
    assert trainer.optimizer is not None
    assert trainer.scaler is not None
    try:
        load_optimizers(pending, trainer.optimizer, trainer.scheduler, trainer.scaler)
        trainer.history.load_state_dict(pending["history"])
        trainer.run.load_state_dict(pending, trainer.distributed.rank)
    except CheckpointError:
        raise
    except (AttributeError, IndexError, KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"Expected a resumable Trainer state, but the checkpoint's is damaged "
            f"({type(exc).__name__}: {exc}). Hint: resume from another checkpoint."
        ) from exc


RollBack = tuple[dict[str, Any] | None, list[tuple[Callback | nn.Module, dict[str, Any]]]]
"""What a refused fit puts back: the state kept for the next fit, the attributes of the
callbacks a resume gave a state, and the weights of the model it resumed."""


def _keep_for_roll_back(trainer: Trainer, targets: Sequence[Callback | nn.Module]) -> None:
    """Add what ``targets`` hold, before they load a state, to what a refusal puts back.

    A callback's attributes; a model's weights (a copy, released once the fit is accepted).
    """
    if trainer._callback_snapshot is None:
        return
    for target in targets:
        if isinstance(target, nn.Module):  # on the CPU: no second copy in accelerator memory
            kept = {k: _cpu_copy(v) for k, v in target.state_dict().items()}
            trainer._callback_snapshot[1].append((target, kept))
        else:
            trainer._callback_snapshot[1].append((target, dict(vars(target))))


def _cpu_copy(value: Any) -> Any:
    """A tensor's copy on the CPU; any other entry (a module's extra state) deep-copied."""
    return (
        value.detach().to("cpu", copy=True) if isinstance(value, torch.Tensor) else deepcopy(value)
    )


def roll_back_refused_fit(trainer: Trainer) -> None:
    """Undo what a refused fit took up: the kept state, the callbacks' states, the weights.

    A callback left half-resumed (a ModelCheckpoint holding the old run's bookkeeping) would
    act on it in the next fit. Loading a state rebinds a callback's attributes, so a copy of
    its ``__dict__`` restores it (one whose ``load_state_dict`` mutates an attribute in place
    is not restored); callbacks that got no state are left as they are. A resumed model gets
    its weights from before the resume back. Nothing happens once the callbacks'
    ``on_fit_start`` has accepted the set-up.
    """
    snapshot, trainer._callback_snapshot = trainer._callback_snapshot, None
    if snapshot is None:
        return
    trainer._pending_state, kept = snapshot
    for target, held in kept:
        if isinstance(target, nn.Module):
            target.load_state_dict(held)
        else:
            vars(target).clear()
            vars(target).update(held)


def _seed_run(trainer: Trainer, run: RunState) -> None:
    """Seed a fresh run: the global generators (with ``seed``) and the run's own.

    Under DDP every process takes rank 0's base seed: all draw the same data order.
    """
    if trainer.seed is not None:
        seed_everything(trainer.seed)
        base = trainer.seed
    else:
        base = int(torch.randint(0, 2**62, (1,)).item())
    run.seed(trainer.distributed.shared_seed(base))
