"""The Trainer's loops and steps: epochs, training and evaluation steps, prediction.

:class:`TrainerLoops` sits between :class:`~rnnkit.training._state.TrainerState` (run state and
checkpoints) and :class:`rnnkit.Trainer` (arguments and entry points). Its public methods
are the chain a subclass may override::

    run_epoch -> train_loop -> training_step       (per training batch)
              -> validate -> evaluation_step   (per validation batch)

Under DDP (``self.distributed``) each process trains on its shard of every global batch
through the DDP wrapper ``train_model``, validates its part of the data on the bare model,
and the epoch's sums are added over the processes; decisions that change the number of
steps (stopping, skipping a batch) are taken together.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from rnnkit.data import Batch
from rnnkit.models.base import evaluating
from rnnkit.shapes import State
from rnnkit.tasks import Chunk, Parts, Task, detach_state
from rnnkit.training._batches import BatchSource, IndexedSource, to_device
from rnnkit.training._precision import Precision
from rnnkit.training._state import TrainerState
from rnnkit.training._totals import EpochTotals
from rnnkit.training.history import History

__all__ = ["TrainerLoops"]


class TrainerLoops(TrainerState):
    """Epoch loop, training and evaluation steps of a :class:`rnnkit.Trainer` (a base class).

    Attributes are documented on :class:`rnnkit.Trainer`.
    """

    if TYPE_CHECKING:  # set by rnnkit.Trainer; declared for type checkers only
        max_epochs: int
        _amp: Precision
        grad_clip_norm: float | None
        log_every_n_steps: int
        teacher_forcing: float | Callable[[int], float]
        fast_dev_run: int
        overfit_batches: int
        shuffle: bool
        scheduler_interval: str
        _task: Task
        _train_source: BatchSource
        _val_source: BatchSource | None

    def _call(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def _run(self) -> History:
        """The epochs, framed by on_fit_start/on_fit_end; interrupts and errors handled."""
        epochs = 1 if self.fast_dev_run else self.max_epochs
        try:
            self._call("on_fit_start")
            while self.epoch < epochs and not self.should_stop:
                self.run_epoch(self.epoch)
                self.epoch += 1
                self._reset_epoch_state()
            self._call("on_fit_end")
            self.distributed.barrier()  # rank 0's files are written before anyone reads them
        except KeyboardInterrupt as exc:
            self._handle_interrupt(exc)
        except BaseException as exc:
            self._notify_exception(exc)
            raise
        return self.history

    # -- one epoch ---------------------------------------------------------------------------

    def run_epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch, validate, record it in the History, call the epoch hooks.

        Args:
            epoch: The epoch, 0-based.

        Returns:
            The epoch's logs: the History record plus what callbacks added.
        """
        started = time.perf_counter()
        lr = self._current_lr()
        self._begin_epoch(epoch)
        self._call("on_epoch_start", epoch)
        train_metrics = self.train_loop()
        val_metrics = {} if self._val_source is None else self.validate()
        record = self._epoch_record(epoch, train_metrics, val_metrics, lr, started)
        return self._finish_epoch(epoch, record)

    def _current_lr(self) -> float:
        assert self.optimizer is not None
        return float(self.optimizer.param_groups[0]["lr"])

    def _begin_epoch(self, epoch: int) -> None:
        """This epoch's order: a fresh permutation, or the saved one when resuming."""
        self._ratio = self._teacher_ratio(epoch)
        self._logged_upto = 0
        if self._take_resume_slot(epoch):
            return
        source = self._train_source
        if self.shuffle and not self.overfit_batches and isinstance(source, IndexedSource):
            self._order = torch.randperm(source.num_samples, generator=self._shuffle_gen)

    def _teacher_ratio(self, epoch: int) -> float:
        schedule = self.teacher_forcing
        ratio = float(schedule(epoch)) if callable(schedule) else float(schedule)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(
                f"Expected the teacher_forcing schedule to give a ratio in [0, 1], but it gave "
                f"{ratio!r} for epoch {epoch}."
            )
        return ratio

    def train_loop(self) -> dict[str, float]:
        """Run the epoch's training batches (from the resume position) and average them.

        Returns:
            The epoch's training loss and metrics.
        """
        assert self.train_model is not None
        self.train_model.train()
        for batch_idx, batch in self._training_batches():
            self._batch_idx = batch_idx
            self._call("on_batch_start", batch_idx)
            outputs = self._run_training_step(batch, batch_idx)
            self._call("on_batch_end", batch_idx, outputs)
            if (batch_idx + 1) % self.log_every_n_steps == 0:
                self._log_interval()
        self._check_divergence()
        return self._totals.compute(self.distributed.all_reduce_named_sums)

    def _training_batches(self) -> Iterator[tuple[int, Batch]]:
        """This process's batches of the epoch from the resume position, with their index.

        Indexed data are cut by :meth:`~rnnkit.distributed.DistributedContext.shard`: in one
        process the plain batches of the order; under DDP this rank's part of each global
        batch (a *filler* when it has no sample: trained with weight 0, not counted).
        """
        source, start = self._train_source, self._position
        self._filler = False
        if not isinstance(source, IndexedSource):
            yield from enumerate(source.batches(self.batch_size, self._order, start), start)
            return
        order = torch.arange(source.num_samples) if self._order is None else self._order
        shards = self.distributed.shard(order, self.batch_size)[start:]
        batches = source.gather([shard.indices for shard in shards])
        for batch_idx, (shard, batch) in enumerate(zip(shards, batches, strict=True), start):
            self._filler = shard.is_filler
            yield batch_idx, batch

    def _run_training_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor | float]:
        """A training step between a snapshot and the commit of its sums and position."""
        self._begin_step()
        self._parts = []
        outputs = self.training_step(to_device(batch, self.device), batch_idx)
        for name, total, count in self._parts:
            self._totals.add(name, total, count)
        self._position = batch_idx + 1
        self._end_step()
        return outputs

    def _log_interval(self) -> None:
        """Read the loss of the batches since the last interval (one synchronisation)."""
        self._check_divergence()
        loss, self._logged_upto = self._totals.mean_since("loss", self._logged_upto)
        if not math.isnan(loss):
            self.logged_metrics = {"loss": loss, "step": float(self.global_step)}

    def validate(self) -> dict[str, float]:
        """Run the validation data; call ``on_validation_end`` with the (unprefixed) metrics.

        Returns:
            The validation loss and metrics.
        """
        assert self._val_source is not None
        metrics = self._evaluation_loop(self._val_source)
        self.last_val_metrics = metrics
        self._call("on_validation_end", metrics)
        return metrics

    def _epoch_record(
        self,
        epoch: int,
        train: dict[str, float],
        val: dict[str, float],
        lr: float,
        started: float,
    ) -> dict[str, float]:
        self.last_train_metrics = train
        record: dict[str, float] = {"epoch": epoch, **train}
        record.update({f"val_{key}": value for key, value in val.items()})
        record["lr"] = lr
        if self.teacher_forcing != 1.0:
            record["teacher_forcing"] = self._ratio
        if self.on_nan == "skip":
            record["skipped_batches"] = self.skipped_batches
        record["time"] = time.perf_counter() - started
        return record

    def _finish_epoch(self, epoch: int, record: dict[str, float]) -> dict[str, float]:
        """Append the record, step the scheduler, then call on_epoch_end."""
        self.history.append(record)
        self._step_scheduler(record, interval="epoch")
        self._epoch_finished = True
        logs = dict(record)
        self._call("on_epoch_end", epoch, logs)
        added = {k: v for k, v in logs.items() if k not in record}
        if added:
            self.history.update_last(added)
        self.should_stop = self.distributed.any_rank(self.should_stop)  # all stop, or none
        return logs

    def _step_scheduler(self, record: dict[str, float], interval: str) -> None:
        if self.scheduler is None or self.scheduler_interval != interval:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(record.get("val_loss", record.get("loss", math.nan)))
        else:
            self.scheduler.step()

    # -- training step ----------------------------------------------------------------------

    def training_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor | float]:
        """One batch: forward, loss, backward and optimizer step (one per TBPTT window).

        The loss and metrics are recorded with :meth:`record` as ``(sum, count)`` parts; the
        returned values stay on the device (no host synchronisation).

        Args:
            batch: The batch, already on the Trainer's device.
            batch_idx: Its index in the epoch.

        Returns:
            ``{"loss": mean loss of the batch (0-dim tensor), "batch_size": N}``.

        Shapes:
            - ``batch.x``: ``(N, L, H_in)``; ``batch.y``: ``(N,)`` or ``(N, L, H_y)``.
        """
        state: State | None = None
        losses: list[tuple[Tensor, int]] = []
        for chunk in self._task.chunks(batch):
            loss, state = self._train_chunk(chunk, state)
            losses.append((loss, chunk.elements))
        return {"loss": _weighted_mean(losses), "batch_size": int(batch.x.shape[0])}

    def _train_chunk(self, chunk: Chunk, state: State | None) -> tuple[Tensor, State | None]:
        assert self.train_model is not None
        with self._amp.autocast():
            output, new_state = self._task.forward(
                self.train_model, chunk, state, self._ratio, self._teacher_gen
            )
            loss = self._task.loss(output, chunk)
        count = 0 if self._filler else chunk.elements
        if self._note_loss(loss, sync=self._sync_nan_check):
            self.optimizer_step(self._global_mean(loss, count))
            if count:
                self.record("loss", loss.detach() * count, count)
                self.record_parts(self._task.metric_parts(output.detach(), chunk))
        return loss.detach(), detach_state(new_state)

    def _global_mean(self, loss: Tensor, count: int) -> Tensor:
        """``loss`` (this rank's mean over ``count`` units) weighted for DDP's average.

        DDP averages the processes' gradients; the weight makes that average the gradient of
        the mean over the whole global batch (``loss`` itself in one process).
        """
        if not self.distributed.is_distributed:
            return loss
        return loss * self.distributed.loss_weight(count)

    @property
    def _sync_nan_check(self) -> bool:
        """Check each loss at once on the CPU (free) or to skip batches; else deferred."""
        return self.device.type != "cuda" or self.on_nan == "skip"

    def optimizer_step(self, loss: Tensor) -> None:
        """Back-propagate ``loss`` and take one optimizer step (scaled, clipped as set)."""
        assert self.optimizer is not None
        assert self.scaler is not None
        assert self.model is not None
        torch.autograd.backward(self.scaler.scale(loss))
        if self.grad_clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.global_step += 1
        self._step_scheduler({}, interval="step")

    def record(self, name: str, total: Tensor, count: Tensor | float) -> None:
        """Add a ``(sum, count)`` part to this step's totals (``mean = sum / count``).

        Shapes:
            - total, count: ``()``
        """
        self._parts.append((name, total, count))

    def record_parts(self, parts: Parts) -> None:
        """:meth:`record` each ``(name, sum, count)`` of ``parts``."""
        self._parts.extend(parts)

    # -- evaluation and prediction ----------------------------------------------------------

    def _evaluation_loop(self, source: BatchSource) -> dict[str, float]:
        """Average the loss and metrics over ``source`` in eval mode, without autograd.

        Returns:
            ``{"loss": ..., <metric>: ...}``.
        """
        assert self.model is not None
        totals = EpochTotals()
        with evaluating(self.model):
            for batch in source.batches(self.batch_size, self._evaluation_part(source)):
                self._parts = []
                self.evaluation_step(to_device(batch, self.device))
                for name, total, count in self._parts:
                    totals.add(name, total, count)
        return totals.compute(self.distributed.all_reduce_named_sums)

    def _evaluation_part(self, source: BatchSource) -> Tensor | None:
        """Under DDP, this rank's part of the (indexed) data; ``None``: all of it, in order."""
        if not self.distributed.is_distributed or not isinstance(source, IndexedSource):
            return None
        return self.distributed.eval_indices(source.num_samples)

    def evaluation_step(self, batch: Batch) -> dict[str, Tensor | float]:
        """One evaluation batch: loss and metrics (TBPTT windows carry the state).

        Args:
            batch: The batch, on the Trainer's device.

        Returns:
            ``{"loss": mean loss of the batch, "batch_size": N}``.

        Shapes:
            - ``batch.x``: ``(N, L, H_in)``; ``batch.y``: ``(N,)`` or ``(N, L, H_y)``.
        """
        assert self.model is not None
        state: State | None = None
        losses: list[tuple[Tensor, int]] = []
        for chunk in self._task.chunks(batch):
            with self._amp.autocast():
                output, state = self._task.forward(self.model, chunk, state)
                loss = self._task.loss(output, chunk)
            self.record("loss", loss * chunk.elements, chunk.elements)
            self.record_parts(self._task.metric_parts(output, chunk))
            losses.append((loss, chunk.elements))
        with self._amp.autocast():
            self.record_parts(self._task.evaluation_parts(self.model, batch))
        return {"loss": _weighted_mean(losses), "batch_size": int(batch.x.shape[0])}

    def _prediction_loop(self, source: BatchSource) -> Tensor:
        """The model's outputs over ``source`` in order, on the CPU (see ``predict``)."""
        assert self.model is not None
        outputs = []
        with evaluating(self.model):
            for batch in source.batches(self.batch_size):
                outputs.append(self.prediction_step(to_device(batch, self.device)))
        return self._task.join_predictions(outputs)

    def prediction_step(self, batch: Batch) -> Tensor:
        """The model's output for one batch, float32 on the CPU.

        The task decides what that is: see :meth:`rnnkit.tasks.Task.predict`.

        Shapes:
            - ``batch.x``: ``(N, L, H_in)``; return: ``(N, C)`` or ``(N, L, H_y)``.
        """
        assert self.model is not None
        with self._amp.autocast():
            return self._task.predict(self.model, batch)


def _weighted_mean(losses: list[tuple[Tensor, int]]) -> Tensor:
    """The mean of per-window losses weighted by their element counts."""
    if len(losses) == 1:
        return losses[0][0]
    total = sum(count for _, count in losses)
    return torch.stack([loss.float() * count for loss, count in losses]).sum() / max(total, 1)
