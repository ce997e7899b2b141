"""What the Trainer computes per batch, for each kind of model.

A :class:`Task` knows how to cut a batch into :class:`Chunk` s (one for a classifier; the
truncated back-propagation windows of ``tbptt_steps`` steps for a regressor), run the model
on a chunk, compute the loss (masked over padding) and the metrics' ``(sum, count)`` parts.

- :class:`ClassifierTask`: ``model(x, lengths) -> (N, C)`` logits, class targets ``(N,)``,
  cross-entropy by default.
- :class:`RegressorTask`: ``model(x, h0, lengths) -> ((N, L, H_y), h_n)``, per-step targets
  ``(N, L, H_y)``, mean squared error over the valid steps by default; teacher forcing below
  ratio 1 goes through ``model.rollout``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.data import Batch
from rnnkit.metrics import Metric, rollout_error
from rnnkit.models.regressor import Seq2SeqRegressor
from rnnkit.shapes import State

__all__ = [
    "Chunk",
    "ClassifierTask",
    "LossFn",
    "Parts",
    "RegressorTask",
    "Task",
    "detach_state",
]

LossFn = Callable[[Tensor, Tensor], Tensor]
"""A user loss: ``loss(output, target) -> 0-dim Tensor``."""

Parts = list[tuple[str, Tensor, Tensor | float]]
"""``(name, sum, count)`` triples, added to the epoch's ``_totals.EpochTotals``."""


class Chunk(NamedTuple):
    """A piece of a batch the model runs on in one call.

    Attributes:
        x: Inputs, batch-first, on the device.
        y: Targets, on the device (``None`` when predicting). Per-step targets shorter than
            the inputs (``L_y < l``) belong to the output's last ``L_y`` steps.
        lengths: Valid lengths to pass to the model (CPU, each >= 1), or ``None``.
        mask: ``True`` at valid steps (on the device), or ``None`` when all are valid.
        elements: Number of target elements the loss averages over.

    Shapes:
        - x: ``(N, l, H_in)``
        - y: ``(N,)`` or ``(N, L_y, H_y)``
        - lengths: ``(N,)``
        - mask: ``(N, l)``
    """

    x: Tensor
    y: Tensor | None
    lengths: Tensor | None
    mask: Tensor | None
    elements: int

    @property
    def target(self) -> Tensor:
        """``y``, which training and evaluation need."""
        if self.y is None:
            raise ValueError("Expected targets `y` in the batch, but it has none.")
        return self.y


def _map_state(state: State | None, fn: Callable[[Tensor], Tensor]) -> State | None:
    """``fn`` applied to ``h`` (and ``c``) of a recurrent state; ``None`` stays ``None``."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return (fn(state[0]), fn(state[1]))
    return fn(state)


def detach_state(state: State | None) -> State | None:
    """Cut the autograd graph behind a recurrent state (between TBPTT windows)."""
    return _map_state(state, Tensor.detach)


def _state_as(state: State | None, dtype: torch.dtype) -> State | None:
    """Return ``state`` in ``dtype``, the inputs' dtype.

    A state carried from a window run under autocast, whose fed-back predictions were
    low-precision, enters the next window in the inputs' dtype again.
    """
    return _map_state(state, lambda t: t.to(dtype))


def _time_major(model: nn.Module) -> bool:
    return getattr(model, "batch_first", True) is False


class Task:
    """Base class: the per-batch computations of one kind of model.

    Args:
        loss: A user loss ``loss(output, target)``, or ``None`` for the default.
        metrics: The metrics to compute on every batch.
    """

    kind = ""
    default_metrics: tuple[str, ...] = ()

    def __init__(self, loss: LossFn | None, metrics: Sequence[Metric]) -> None:
        self.loss_fn = loss
        self.metrics = list(metrics)

    def chunks(self, batch: Batch) -> Iterator[Chunk]:
        """The pieces the batch is run in."""
        raise NotImplementedError

    def forward(
        self,
        model: nn.Module,
        chunk: Chunk,
        state: State | None,
        ratio: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, State | None]:
        """Run the model on a chunk; return its batch-first output and final state."""
        raise NotImplementedError

    def loss(self, output: Tensor, chunk: Chunk) -> Tensor:
        """The chunk's loss (a 0-dim tensor)."""
        raise NotImplementedError

    def metric_parts(self, output: Tensor, chunk: Chunk) -> Parts:
        """Every metric's ``(sum, count)`` on the chunk (no host synchronisation)."""
        output = self.aligned(output, chunk)
        return [(m.name, *m.parts(output, chunk.target, chunk.mask)) for m in self.metrics]

    def aligned(self, output: Tensor, chunk: Chunk) -> Tensor:
        """The part of ``output`` the targets refer to (all of it, by default)."""
        return output

    def extra_eval_parts(self, model: nn.Module, batch: Batch) -> Parts:
        """Parts computed once per whole batch in evaluation (e.g. the rollout error)."""
        return []


class ClassifierTask(Task):
    """A many-to-one classifier: one logit row per sequence."""

    kind = "classifier"
    default_metrics = ("accuracy",)

    def chunks(self, batch: Batch) -> Iterator[Chunk]:
        """The whole batch, once."""
        x, y, lengths = batch
        yield Chunk(x, y, lengths, None, int(x.shape[0]))

    def forward(
        self,
        model: nn.Module,
        chunk: Chunk,
        state: State | None,
        ratio: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, State | None]:
        """``model(x, lengths)`` (``x`` transposed for a time-major model)."""
        x = chunk.x.transpose(0, 1) if _time_major(model) else chunk.x
        if chunk.lengths is None:
            return model(x), None
        return model(x, chunk.lengths), None

    def loss(self, output: Tensor, chunk: Chunk) -> Tensor:
        """Cross-entropy over the batch, or the user's loss."""
        if self.loss_fn is not None:
            return self.loss_fn(output, chunk.target)
        return F.cross_entropy(output, chunk.target)


class RegressorTask(Task):
    """A many-to-many regressor: a value per step, optionally in TBPTT windows.

    Args:
        loss: A user loss; with padded batches it gets only the valid steps, ``(M, H_y)``.
        metrics: The metrics to compute on every batch.
        tbptt_steps: Window length k of truncated back-propagation, or ``None`` (full).
        rollout_horizon: Free-running steps scored in evaluation (``"rollout_mse"``), or
            ``None``.
    """

    kind = "regressor"
    default_metrics = ("mae",)

    def __init__(
        self,
        loss: LossFn | None,
        metrics: Sequence[Metric],
        tbptt_steps: int | None = None,
        rollout_horizon: int | None = None,
    ) -> None:
        super().__init__(loss, metrics)
        self.tbptt_steps = tbptt_steps
        self.rollout_horizon = rollout_horizon

    def chunks(self, batch: Batch) -> Iterator[Chunk]:
        """Windows of ``tbptt_steps`` steps (one window without TBPTT); empty ones skipped."""
        x, y, lengths = batch
        steps = int(x.shape[1])
        window = self.tbptt_steps or steps
        longest = steps if lengths is None else int(lengths.max())
        for start in range(0, longest, window):
            end = min(start + window, steps)
            yield _window(x, y, lengths, start, end)

    def forward(
        self,
        model: nn.Module,
        chunk: Chunk,
        state: State | None,
        ratio: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, State | None]:
        """``model(x, h0, lengths)``, or ``model.rollout(x, ratio, h0)`` when ratio < 1."""
        time_major = _time_major(model)
        x = chunk.x.transpose(0, 1) if time_major else chunk.x
        state = _state_as(state, x.dtype)
        if ratio < 1.0:
            regressor = cast(Seq2SeqRegressor, model)
            output, new_state = regressor.rollout(x, ratio, h0=state, generator=generator)
        else:
            output, new_state = model(x, state, chunk.lengths)
        return (output.transpose(0, 1) if time_major else output), new_state

    def loss(self, output: Tensor, chunk: Chunk) -> Tensor:
        """MSE over the valid steps, or the user's loss (on the valid steps only)."""
        pred, target, mask = self.aligned(output, chunk), chunk.target, chunk.mask
        if self.loss_fn is not None:
            if mask is not None:  # boolean indexing: one host synchronisation on CUDA
                pred, target = pred[mask], target[mask]
            return self.loss_fn(pred, target)
        if mask is None:
            return F.mse_loss(pred.float(), target.float())
        squared = (pred.float() - target.float()).square()
        zero = torch.zeros((), dtype=squared.dtype, device=squared.device)
        return torch.where(mask.unsqueeze(-1), squared, zero).sum() / chunk.elements

    def aligned(self, output: Tensor, chunk: Chunk) -> Tensor:
        """The output's last ``L_y`` steps when the targets are shorter (many-to-one)."""
        steps = chunk.target.shape[1]
        return output if steps == output.shape[1] else output[:, -steps:]

    def extra_eval_parts(self, model: nn.Module, batch: Batch) -> Parts:
        """The free-running error over ``rollout_horizon`` steps, as ``"rollout_mse"``."""
        horizon = self.rollout_horizon
        if horizon is None or batch.y is None:
            return []
        value = rollout_error(cast(Seq2SeqRegressor, model), batch.x, batch.y, horizon)
        count = float(batch.y.shape[0] * horizon * batch.y.shape[2])
        return [("rollout_mse", value.float() * count, count)]


def _window(x: Tensor, y: Tensor | None, lengths: Tensor | None, start: int, end: int) -> Chunk:
    """Steps ``start..end`` of a batch, with the lengths and mask of that window."""
    width = end - start
    xs = x[:, start:end]
    ys = None if y is None else (y[:, start:end] if y.shape[1] == x.shape[1] else y)
    size = 0 if ys is None else int(ys.shape[1]) * int(ys.shape[2])
    if lengths is None:
        return Chunk(xs, ys, None, None, int(x.shape[0]) * size)
    valid = (lengths - start).clamp(0, width)
    count = 0 if ys is None else int(valid.sum()) * int(ys.shape[2])
    if bool((valid == width).all()):
        return Chunk(xs, ys, None, None, count)
    mask = torch.arange(width).unsqueeze(0) < valid.unsqueeze(1)
    return Chunk(xs, ys, valid.clamp(min=1), mask.to(x.device, non_blocking=True), count)


def make_task(kind: str, loss: LossFn | None, metrics: Sequence[Metric], **options: Any) -> Task:
    """Build the task for ``kind`` (``"classifier"`` or ``"regressor"``)."""
    if kind == "classifier":
        return ClassifierTask(loss, metrics)
    return RegressorTask(loss, metrics, **options)
