"""The Trainer's loops, as plain functions of the Trainer: epochs, batches, evaluation.

The :class:`~rnnkit.Trainer` calls them from its public methods; they call back only the
Trainer's public, overridable steps (``run_epoch``, ``train_loop``, ``training_step``,
``validate``, ``evaluation_step``, ``prediction_step``) and read what those *return*: a
step's :class:`~rnnkit.training._steps.StepOutput` carries its loss and metric parts, which
the loop adds to the epoch's sums in the run state (:class:`~rnnkit.training._state.RunState`).

Under DDP each process trains on its shard of every global batch through the DDP wrapper
``train_model``, validates its part of the data on the bare model, and the epoch's sums are
added over the processes; decisions that change the number of steps (stopping, skipping a
batch) are taken together.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from rnnkit.callbacks import Callback, ModelCheckpoint
from rnnkit.data import Batch
from rnnkit.distributed import all_gather_object
from rnnkit.models.base import evaluating
from rnnkit.training._batches import BatchSource, IndexedSource, input_dtype, to_device
from rnnkit.training._checkpointing import interrupt_path
from rnnkit.training._setup import roll_back_refused_fit
from rnnkit.training._stateful import join_stream_predictions, streaming
from rnnkit.training._steps import check_divergence, parts_of
from rnnkit.training._totals import EpochTotals
from rnnkit.training.history import History

if TYPE_CHECKING:
    from rnnkit.training.trainer import Trainer

__all__ = [
    "evaluation_loop",
    "hook_order",
    "optimizer_step",
    "prediction_loop",
    "run_epoch",
    "run_fit",
    "train_loop",
    "validate",
]

logger = logging.getLogger("rnnkit")


def call(trainer: Trainer, hook: str, *args: Any) -> None:
    """Call ``hook`` of every callback, in order, the checkpoint writers last."""
    for callback in hook_order(trainer.callbacks):
        getattr(callback, hook)(trainer, *args)


def hook_order(callbacks: Sequence[Callback]) -> list[Callback]:
    """``callbacks`` in their order, with every :class:`~rnnkit.ModelCheckpoint` moved last.

    A checkpoint then holds what every other callback did this epoch (an EarlyStopping's
    count, a key it logged), so a run resumed from it continues exactly whatever the order.
    """
    return sorted(callbacks, key=lambda callback: isinstance(callback, ModelCheckpoint))


def run_fit(trainer: Trainer) -> History:
    """The epochs, framed by on_fit_start/on_fit_end; interrupts and errors handled."""
    epochs = 1 if trainer.options.fast_dev_run else trainer.max_epochs
    run = trainer.run
    trainer.interrupts.install()
    try:
        call(trainer, "on_fit_start")
        trainer._callback_snapshot = None  # the callbacks accepted the set-up
        while run.epoch < epochs and (not run.should_stop or run.has_kept_aside_epoch()):
            trainer.run_epoch(run.epoch)
            with trainer.interrupts.held():  # never an epoch counted but not reset
                run.next_epoch()
        call(trainer, "on_fit_end")
        trainer.distributed.barrier()  # rank 0's files are written before anyone reads them
    except KeyboardInterrupt as exc:
        if trainer._callback_snapshot is not None:  # before on_fit_start accepted
            interrupted_before_training(trainer, exc)
        else:
            handle_interrupt(trainer, exc)
    except BaseException as exc:
        try:
            notify_exception(trainer, exc)  # the callbacks close what they opened first
        finally:
            roll_back_refused_fit(trainer)  # an on_fit_start refusal undoes a resume's states
        raise
    finally:
        trainer.interrupts.uninstall()
    return trainer.history


def run_epoch(trainer: Trainer, epoch: int) -> dict[str, float]:
    """Train one epoch, validate, record it, call the epoch hooks (``Trainer.run_epoch``)."""
    started = time.perf_counter()
    with trainer.interrupts.held():  # the order drawn is the order saved
        _begin_epoch(trainer, epoch)
    assert trainer.run.epoch_lr is not None
    lr = trainer.run.epoch_lr
    call(trainer, "on_epoch_start", epoch)
    train_metrics = trainer.train_loop()
    val_metrics = {} if trainer.val_source is None else trainer.validate()
    trainer.last_train_metrics = train_metrics
    record = _epoch_record(trainer, epoch, train_metrics, val_metrics, lr)
    record["time"] = time.perf_counter() - started
    return _finish_epoch(trainer, epoch, record)


def _begin_epoch(trainer: Trainer, epoch: int) -> None:
    """This epoch's ratio and order: a fresh permutation, or the saved one when resuming."""
    run = trainer.run
    run.teacher_ratio = _teacher_ratio(trainer, epoch)
    assert trainer.optimizer is not None
    current_lr = float(trainer.optimizer.param_groups[0]["lr"])
    saved = run.saved_epoch
    if run.resume_epoch(epoch, trainer.device, trainer.distributed.is_global_zero):
        run.epoch_lr = current_lr if run.epoch_lr is None else run.epoch_lr
        assert saved is not None
        if saved.rereads_interval(trainer.options.log_every_n_steps):
            _log_interval(trainer)  # a read that a Ctrl-C in on_batch_end pre-empted, or
            if not trainer.logged_metrics and run.last_logged is not None:  # the one it did
                trainer.logged_metrics = dict(run.last_logged)
        return
    run.epoch_lr, run.epoch_start_step = current_lr, run.global_step
    source, options = trainer.train_source, trainer.options
    if options.shuffle and not options.overfit_batches and isinstance(source, IndexedSource):
        run.order = torch.randperm(source.num_samples, generator=run.shuffle_gen)


def _teacher_ratio(trainer: Trainer, epoch: int) -> float:
    schedule = trainer.options.teacher_forcing
    ratio = float(schedule(epoch)) if callable(schedule) else float(schedule)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(
            f"Expected the teacher_forcing schedule to give a ratio in [0, 1], but it gave "
            f"{ratio!r} for epoch {epoch}."
        )
    return ratio


def train_loop(trainer: Trainer) -> dict[str, float]:
    """The epoch's training batches from the resume position, averaged (``train_loop``)."""
    assert trainer.train_model is not None
    trainer.train_model.train()
    run, dtype = trainer.run, input_dtype(trainer.train_model)
    for batch_idx, batch in _training_batches(trainer):
        call(trainer, "on_batch_start", batch_idx)
        run.begin_step(trainer.device)
        outputs = trainer.training_step(to_device(batch, trainer.device, dtype), batch_idx)
        for name, total, count in parts_of(outputs, "training_step"):
            run.totals.add(name, total, count)
        run.end_step(batch_idx + 1)
        trainer.interrupts.release()  # a Ctrl-C during the update lands here, step committed
        call(trainer, "on_batch_end", batch_idx, outputs)
        if (batch_idx + 1) % trainer.options.log_every_n_steps == 0:
            _log_interval(trainer)
    check_divergence(trainer)
    return run.totals.compute(trainer.distributed.all_reduce_named_sums)


def _training_batches(trainer: Trainer) -> Iterator[tuple[int, Batch]]:
    """This process's batches of the epoch from the resume position, with their index.

    Indexed data are cut by :meth:`~rnnkit.distributed.DistributedContext.shard`: in one
    process the plain batches of the order; under DDP this rank's part of each global batch
    (a *filler* when it has no sample: the run state lists those batch indices).
    """
    run, source, start = trainer.run, trainer.train_source, trainer.run.position
    assert source is not None
    if not isinstance(source, IndexedSource):
        yield from enumerate(source.batches(trainer.batch_size, run.order, start), start)
        return
    order = torch.arange(source.num_samples) if run.order is None else run.order
    shards = trainer.distributed.shard(order, trainer.batch_size)[start:]
    run.fillers = frozenset(i for i, s in enumerate(shards, start) if s.is_filler)
    batches = source.gather([shard.indices for shard in shards])
    yield from enumerate(batches, start)


def _log_interval(trainer: Trainer) -> None:
    """Read the loss of the batches since the last interval (one synchronisation)."""
    check_divergence(trainer)
    run = trainer.run
    loss, run.logged_upto = run.totals.mean_since("loss", run.logged_upto)
    if not math.isnan(loss):
        trainer.logged_metrics = {"loss": loss, "step": float(trainer.run.global_step)}
        if run.step_lr is not None:
            trainer.logged_metrics["lr"] = run.step_lr
        run.last_logged = dict(trainer.logged_metrics)


def _epoch_record(
    trainer: Trainer, epoch: int, train: dict[str, float], val: dict[str, float], lr: float
) -> dict[str, float]:
    # an epoch whose every update was skipped (on_nan="skip") measured nothing: NaN, as
    # evaluate reports it, so a callback monitoring "loss" still finds the key
    measured = ["loss", *(metric.name for metric in trainer.task_of_fit.metrics)]
    record: dict[str, float] = {"epoch": epoch, **dict.fromkeys(measured, math.nan), **train}
    record.update({f"val_{key}": value for key, value in val.items()})
    record["lr"] = lr
    if trainer.options.teacher_forcing != 1.0:
        record["teacher_forcing"] = trainer.run.teacher_ratio
    if trainer.options.on_nan == "skip":
        record["skipped_batches"] = trainer.run.skipped_batches
    return record


def _finish_epoch(trainer: Trainer, epoch: int, record: dict[str, float]) -> dict[str, float]:
    """Append the record, step the scheduler, then call on_epoch_end.

    All of it or none: a Ctrl-C waits until the epoch's bookkeeping is complete, so a saved
    state never holds the record without the scheduler step, or the callbacks' view of it.
    """
    with trainer.interrupts.held():
        return _finish_epoch_held(trainer, epoch, record)


def _finish_epoch_held(trainer: Trainer, epoch: int, record: dict[str, float]) -> dict[str, float]:
    """The other callbacks, then the shared stop decision, then the checkpoint writers.

    A saved checkpoint so holds the stop any rank asked for and the keys callbacks logged.
    """
    trainer.history.append(record)
    step_scheduler(trainer, record, interval="epoch")
    trainer.run.epoch_finished = True
    logs = dict(record)
    ordered = hook_order(trainer.callbacks)
    writers = [cb for cb in ordered if isinstance(cb, ModelCheckpoint)]
    for callback in ordered[: len(ordered) - len(writers)]:
        callback.on_epoch_end(trainer, epoch, logs)
    _record_added(trainer, record, logs)
    run = trainer.run
    run.should_stop = trainer.distributed.any_rank(run.should_stop)  # all stop, or none
    if trainer.distributed.is_distributed:  # ranks may have drawn unequally: keep each's
        run.rank_rng = all_gather_object(run.rng_state(trainer.device))
    for callback in writers:
        callback.on_epoch_end(trainer, epoch, logs)
    _record_added(trainer, record, logs)
    return logs


def _record_added(trainer: Trainer, record: dict[str, float], logs: dict[str, float]) -> None:
    """Put the keys callbacks added to ``logs`` into the History's last record."""
    added = {k: v for k, v in logs.items() if k not in record}
    if added:
        trainer.history.update_last(added)


def optimizer_step(trainer: Trainer, loss: Tensor) -> None:
    """The body of ``Trainer.optimizer_step``: backward, clip, step, count, schedule."""
    assert trainer.optimizer is not None
    assert trainer.scaler is not None
    assert trainer.model is not None
    torch.autograd.backward(trainer.scaler.scale(loss))
    if trainer.options.grad_clip_norm is not None:
        trainer.scaler.unscale_(trainer.optimizer)
        torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), trainer.options.grad_clip_norm)
    # From the update on, a Ctrl-C waits until the loop has committed the step.
    trainer.interrupts.hold()
    trainer.scaler.step(trainer.optimizer)
    trainer.scaler.update()
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.run.global_step += 1
    trainer.run.step_lr = float(trainer.optimizer.param_groups[0]["lr"])  # before it moves
    step_scheduler(trainer, {}, interval="step")


def step_scheduler(trainer: Trainer, record: dict[str, float], interval: str) -> None:
    """Step the scheduler if it runs at ``interval`` (``"epoch"`` or ``"step"``)."""
    scheduler = trainer.scheduler
    if scheduler is None or trainer.options.scheduler_interval != interval:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(record.get("val_loss", record.get("loss", math.nan)))
    else:
        scheduler.step()


def validate(trainer: Trainer) -> dict[str, float]:
    """The body of ``Trainer.validate``: the validation data's metrics, then the hook."""
    assert trainer.val_source is not None
    metrics = evaluation_loop(trainer, trainer.val_source)
    trainer.last_val_metrics = metrics
    call(trainer, "on_validation_end", metrics)
    return metrics


def evaluation_loop(trainer: Trainer, source: BatchSource) -> dict[str, float]:
    """Average the loss and metrics over ``source`` in eval mode, without autograd."""
    model, _ = trainer.evaluated
    totals = EpochTotals()
    with evaluating(model), streaming(trainer, source):
        for batch in source.batches(trainer.batch_size, _evaluation_part(trainer, source)):
            outputs = trainer.evaluation_step(to_device(batch, trainer.device, input_dtype(model)))
            for name, total, count in parts_of(outputs, "evaluation_step"):
                totals.add(name, total, count)
    return totals.compute(trainer.distributed.all_reduce_named_sums)


def _evaluation_part(trainer: Trainer, source: BatchSource) -> Tensor | None:
    """Under DDP, this rank's part of the (indexed) data; ``None``: all of it, in order."""
    distributed = trainer.distributed
    if not distributed.is_distributed or not isinstance(source, IndexedSource):
        return None
    return distributed.eval_indices(source.num_samples)


def prediction_loop(trainer: Trainer, source: BatchSource) -> Tensor:
    """The model's outputs over ``source`` in order, on the CPU (see ``predict``)."""
    model, task = trainer.evaluated
    outputs, widths, dtype = [], [], input_dtype(model)
    with evaluating(model), streaming(trainer, source):
        for batch in source.batches(trainer.batch_size):
            outputs.append(trainer.prediction_step(to_device(batch, trainer.device, dtype)))
            widths.append(int(batch.x.shape[1]))
        if trainer.eval_carry is not None:  # a stream: lay the outputs along the streams
            return join_stream_predictions(outputs)
    return task.join_predictions(outputs, _data_steps(source, outputs, widths))


def _data_steps(source: BatchSource, outputs: list[Tensor], widths: list[int]) -> int:
    """The data's L if every output has one row per input step of its batch, else 0.

    Each batch was cut to its longest sequence; per-step outputs are joined as long as the data.
    """
    per_step = all(o.dim() > 2 and o.shape[1] == w for o, w in zip(outputs, widths, strict=True))
    return source.dataset.seq_len if per_step and isinstance(source, IndexedSource) else 0


def handle_interrupt(trainer: Trainer, exc: KeyboardInterrupt) -> None:
    """Save a resumable checkpoint (rank 0), say how to resume, notify the callbacks."""
    if trainer.interrupts.holding and trainer.run.snapshot is not None:
        logger.warning(
            "rnnkit: a KeyboardInterrupt was raised by code after the update of global step "
            "%d was applied (e.g. a loss in a later TBPTT window); the checkpoint holds the "
            "updated weights, so a resumed run will not equal an uninterrupted one exactly.",
            trainer.run.snapshot.global_step,
        )
    trainer.interrupts.uninstall()
    check_divergence(trainer)
    path = interrupt_path(trainer.callbacks, trainer.options.default_root_dir)
    if trainer.distributed.is_global_zero:
        path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(path)
        state = trainer.run.state_dict(trainer.device)
        logger.warning(
            "rnnkit: training interrupted (KeyboardInterrupt) in epoch %d after %d batches of "
            "it (global step %d). Saved a resumable checkpoint to %r. Resume exactly with "
            "trainer.fit(model, train, val, resume_from=%r) (or resume_from='last').",
            state["epoch"],
            state["position"],
            state["global_step"],
            str(path),
            str(path),
        )
    trainer.interrupted, trainer.interrupt_checkpoint = True, path
    notify_exception(trainer, exc)


def interrupted_before_training(trainer: Trainer, exc: KeyboardInterrupt) -> None:
    """A Ctrl-C in ``on_fit_start``: no step was taken, so nothing is saved.

    The ModelCheckpoint may not have claimed its folder yet (it may be another run's), and a
    resumed fit's checkpoint still holds everything; the fit's set-up is undone as for a
    refusal.
    """
    trainer.interrupts.uninstall()
    logger.warning(
        "rnnkit: training interrupted (KeyboardInterrupt) before its first step; nothing was "
        "saved. Run the same fit again to start (or resume) it."
    )
    trainer.interrupted, trainer.interrupt_checkpoint = True, None
    try:
        notify_exception(trainer, exc)
    finally:
        roll_back_refused_fit(trainer)


def notify_exception(trainer: Trainer, exc: BaseException) -> None:
    """Call every callback's ``on_exception``; their own errors never mask ``exc``."""
    for callback in hook_order(trainer.callbacks):
        try:
            callback.on_exception(trainer, exc)
        except Exception as inner:
            note = getattr(exc, "add_note", None)
            if note is not None:
                note(f"{type(callback).__name__}.on_exception raised {inner!r}")
