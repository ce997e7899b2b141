"""What one step computes and returns: :class:`StepOutput`, and the Trainer's default steps.

A step returns everything it computed: the batch's mean loss, its size and the ``(name, sum,
count)`` parts of the loss and the metrics. The loop adds the parts to the epoch's sums and
hands the output to the callbacks; nothing travels through hidden fields, so a subclass that
overrides a step and returns what ``super()`` returned keeps every metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from rnnkit.data import Batch
from rnnkit.shapes import State
from rnnkit.tasks import Chunk, Parts, detach_state
from rnnkit.training._checkpointing import last_candidates
from rnnkit.training._divergence import diverged
from rnnkit.training._stateful import predict_stream_batch

if TYPE_CHECKING:
    from rnnkit.training.trainer import Trainer

__all__ = [
    "StepOutput",
    "check_divergence",
    "check_loss",
    "evaluation_step",
    "global_mean",
    "parts_of",
    "prediction_step",
    "training_step",
]


class StepOutput(dict[str, Any]):
    """What a training or evaluation step computed (a dict, as callbacks receive it).

    Keys: ``"loss"`` (the batch's mean loss, a 0-dim tensor on the device), ``"batch_size"``
    (N) and ``"parts"`` (the ``(name, sum, count)`` parts the epoch's averages are made of:
    ``"loss"`` and every metric). A step that adds an average of its own appends to the parts
    with :meth:`record` and returns the output.

    Args:
        loss: The batch's mean loss.
        batch_size: The sequences in the batch.
        parts: The parts so far.
    """

    def __init__(
        self,
        loss: torch.Tensor,
        batch_size: int,
        parts: list[tuple[str, torch.Tensor, torch.Tensor | float]] | None = None,
    ) -> None:
        super().__init__(loss=loss, batch_size=batch_size, parts=list(parts or []))

    @property
    def parts(self) -> Parts:
        """The ``(name, sum, count)`` parts of the step."""
        parts: Parts = self["parts"]
        return parts

    def record(self, name: str, total: torch.Tensor, count: torch.Tensor | float) -> None:
        """Add a part: the epoch's ``name`` is the sum of the totals over the sum of counts.

        Shapes:
            - total, count: ``()``
        """
        self.parts.append((name, total, count))


def parts_of(outputs: object, step: str) -> Parts:
    """The parts of a step's output.

    Raises:
        TypeError: The step returned something without ``"parts"`` (its loss and metrics
            would be lost).
    """
    if isinstance(outputs, Mapping) and isinstance(outputs.get("parts"), list):
        parts: Parts = outputs["parts"]
        return parts
    kind = type(outputs).__name__
    keys = sorted(outputs) if isinstance(outputs, Mapping) else None
    raise TypeError(
        f"Expected `{step}` to return the StepOutput of super().{step}(...) (a dict with "
        f"'loss', 'batch_size' and 'parts'), but got a {kind}"
        f"{'' if keys is None else f' with keys {keys}'}. Hint: return what super() "
        "returned, after outputs.record(name, sum, count) for an average of your own."
    )


def weighted_mean(losses: list[tuple[Tensor, int]]) -> Tensor:
    """The mean of per-window losses weighted by their element counts."""
    if len(losses) == 1:
        return losses[0][0]
    total = sum(count for _, count in losses)
    return torch.stack([loss.float() * count for loss, count in losses]).sum() / max(total, 1)


def training_step(trainer: Trainer, batch: Batch, batch_idx: int) -> StepOutput:
    """The default training step (see :meth:`rnnkit.Trainer.training_step`)."""
    weight = 0 if trainer.run.is_filler(batch_idx) else 1
    carry = trainer.stream_carry  # stateful=True: the state the previous batch ended with
    state: State | None = None if carry is None else carry.begin(batch_idx)
    losses: list[tuple[Tensor, int]] = []
    parts: Parts = []
    for chunk in trainer.task_of_fit.chunks(batch):
        loss, state = _train_chunk(trainer, chunk, state, weight, parts)
        losses.append((loss, chunk.elements))
    if carry is not None:
        carry.end(state)
    return StepOutput(weighted_mean(losses), int(batch.x.shape[0]), parts)


def _train_chunk(
    trainer: Trainer, chunk: Chunk, state: State | None, weight: int, parts: Parts
) -> tuple[Tensor, State | None]:
    """Forward, loss, backward and optimizer step on one chunk; its parts go to ``parts``."""
    assert trainer.train_model is not None
    task, run = trainer.task_of_fit, trainer.run
    with trainer.precision_plugin.autocast():
        output, new_state = task.forward(
            trainer.train_model, chunk, state, run.teacher_ratio, run.teacher_gen
        )
        loss = task.loss(output, chunk)
    count = weight * chunk.elements
    if check_loss(trainer, loss):
        if count:  # before the update: once it is applied, the step must complete
            parts.append(("loss", loss.detach() * count, count))
            parts.extend(task.metric_parts(output.detach(), chunk))
        elif chunk.elements == 0:  # nothing labelled: the keys still appear (NaN if never counted)
            parts.append(("loss", loss.detach() * 0, 0))
            parts.extend(task.metric_parts(output.detach(), chunk))
        trainer.optimizer_step(global_mean(trainer, loss, count))
    return loss.detach(), detach_state(new_state)


def evaluation_step(trainer: Trainer, batch: Batch) -> StepOutput:
    """The default evaluation step (see :meth:`rnnkit.Trainer.evaluation_step`)."""
    model, task = trainer.evaluated
    carry = trainer.eval_carry  # a stream with stateful=True
    state: State | None = None if carry is None else carry.begin(carry.count)
    losses: list[tuple[Tensor, int]] = []
    parts: Parts = []
    for chunk in task.chunks(batch):
        with trainer.precision_plugin.autocast():
            output, state = task.forward(model, chunk, state)
            loss = task.loss(output, chunk)
        parts.append(("loss", loss * chunk.elements, chunk.elements))
        parts.extend(task.metric_parts(output, chunk))
        losses.append((loss, chunk.elements))
    if carry is not None:
        carry.end(state)
    with trainer.precision_plugin.autocast():
        parts.extend(task.evaluation_parts(model, batch))
    return StepOutput(weighted_mean(losses), int(batch.x.shape[0]), parts)


def global_mean(trainer: Trainer, loss: Tensor, count: int) -> Tensor:
    """``loss`` (this rank's mean over ``count`` units) weighted for DDP's average.

    DDP averages the processes' gradients; the weight makes that average the gradient of the
    mean over the whole global batch (``loss`` itself in one process).
    """
    if not trainer.distributed.is_distributed:
        return loss
    return loss * trainer.distributed.loss_weight(count)


def check_loss(trainer: Trainer, loss: Tensor) -> bool:
    """Whether the update with ``loss`` goes on; False: skipped (``on_nan="skip"``).

    Raises:
        rnnkit.errors.TrainingDivergedError: A non-finite loss with ``on_nan="raise"``.
    """
    run = trainer.run
    verdict = trainer.nan_guard.finite(loss, run.global_step)
    if verdict is None:
        raise _diverged(trainer, float(loss.detach()), run.global_step)
    if not verdict:
        run.skipped_batches += 1
    return verdict


def check_divergence(trainer: Trainer) -> None:
    """Raise for a non-finite loss recorded on the device (a host synchronisation)."""
    step = trainer.nan_guard.first_bad_step()
    if step is not None:
        raise _diverged(trainer, math.nan, step)


def _diverged(trainer: Trainer, value: float, step: int) -> Exception:
    candidates = last_candidates(trainer.callbacks, trainer.options.default_root_dir)[:-1]
    run = trainer.run
    return diverged(
        value,
        step,
        epoch=run.epoch,
        batch_idx=run.position,
        global_step=run.global_step,
        kept=[path for path in candidates if path.is_file()],
    )


def prediction_step(trainer: Trainer, batch: Batch) -> Tensor:
    """The body of ``Trainer.prediction_step``: the task's prediction, carried on streams."""
    model, task = trainer.evaluated
    with trainer.precision_plugin.autocast():
        if trainer.eval_carry is not None:
            return predict_stream_batch(task, model, batch, trainer.eval_carry)
        return task.predict(model, batch)
