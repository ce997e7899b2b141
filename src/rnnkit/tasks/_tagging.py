"""Per-step classification (sequence labelling): a class at every step."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.data import IGNORE_INDEX, Batch, valid_mask
from rnnkit.shapes import State
from rnnkit.tasks._base import Chunk, Parts, Task, check_labels_fit, time_major
from rnnkit.tasks._info import DataInfo

__all__ = ["TaggingTask"]


class TaggingTask(Task):
    """Label every step: ``model(x)`` or ``model(x, lengths)`` returns ``(N, L, C)`` logits.

    The targets are class indices per step ``(N, L)``. Padded steps (beyond ``lengths``) and
    steps labelled ``-100`` count nowhere: not in the loss, its gradient, the accuracy, nor
    the number of steps the loss is averaged over. The default loss is cross-entropy and the
    default metric ``"accuracy"`` (per step). :class:`~rnnkit.SequenceTagger` gets this task
    automatically; pass one to :class:`~rnnkit.Trainer` to train any other module with that
    ``forward``. A user loss gets only the steps that count, flattened: logits ``(M, C)`` and
    targets ``(M,)``.

    Args:
        loss: ``loss(logits, targets) -> 0-dim Tensor``, or ``None`` for cross-entropy.
        metrics: Metric names or objects for class targets; ``None``: ``["accuracy"]``.

    Shapes:
        - ``x``: ``(N, L, H_in)``; ``lengths``: ``(N,)``; output: ``(N, L, C)``;
          ``y``: ``(N, L)``.
    """

    target_kind = "tag"
    metric_kind = "class"
    default_metrics = ("accuracy",)

    def check_data(self, model: nn.Module, info: DataInfo, name: str) -> None:
        """Also check one label per step, and the labels against the model's ``num_classes``.

        Raises:
            ValueError: Labels beyond ``num_classes``, or not one label per step.
            rnnkit.errors.ShapeError: The wrong sequence width.
        """
        super().check_data(model, info, name)
        if info.target_len is not None and info.target_len != info.seq_len:
            raise ValueError(
                f"Expected one label per step in `{name}`, targets (N, L) = (?, {info.seq_len}), "
                f"but got (?, {info.target_len}). Hint: label padded steps -100 so that every "
                "sequence's labels are as long as its inputs."
            )
        check_labels_fit(model, info, name)

    def describe_targets(self) -> str:
        """``"per-step class labels (N, L)"``."""
        return "per-step class labels (N, L)"

    def target_hint(self, info: DataInfo) -> str:
        """Other targets need another model."""
        if info.target_kind == "class":
            return "use a SequenceClassifier for one label per sequence"
        return "use a Seq2SeqRegressor for per-step values, or give integer labels (N, L)"

    def chunks(self, batch: Batch) -> Iterator[Chunk]:
        """The whole batch, once, with the valid-step mask and the count of labelled steps."""
        x, y, lengths = batch
        steps = int(x.shape[1])
        mask = None
        if lengths is not None and bool((lengths < steps).any()):
            mask = valid_mask(lengths, steps, device=x.device)
        yield Chunk(x, y, lengths, mask, _labelled_count(y, mask))

    def forward(
        self,
        model: nn.Module,
        chunk: Chunk,
        state: State | None,
        ratio: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, State | None]:
        """``model(x[, lengths])``, with the logits batch-first also for a time-major model."""
        logits, _ = super().forward(model, chunk, state, ratio, generator)
        return (logits.transpose(0, 1) if time_major(model) else logits), None

    def loss(self, output: Tensor, chunk: Chunk) -> Tensor:
        """Mean cross-entropy over the labelled steps, or the user's loss on them.

        A chunk without a labelled step gives 0 (with a graph, so the step runs as usual)
        without calling the user's loss, whose mean over no steps would be NaN.
        """
        if self.loss_fn is not None:
            if chunk.elements == 0:
                return output.sum() * 0.0
            keep = _keep(chunk.target, chunk.mask)
            return self.user_loss(output[keep], chunk.target[keep])
        targets = chunk.target
        if chunk.mask is not None:
            targets = targets.masked_fill(~chunk.mask, IGNORE_INDEX)
        # A sum over the counted steps: a batch with no labelled step gives 0, not NaN.
        total = F.cross_entropy(
            output.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        return total / max(chunk.elements, 1)

    def metric_parts(self, output: Tensor, chunk: Chunk) -> Parts:
        """Every metric's ``(sum, count)`` over the labelled, unpadded steps."""
        target = chunk.target
        keep = _keep(target, chunk.mask)
        # Ignored steps are masked out; give them a valid index so top-k's gather accepts them.
        safe = target.masked_fill(~keep, 0)
        return [(m.name, *m.parts(output, safe, keep)) for m in self.metrics]


def _keep(target: Tensor, mask: Tensor | None) -> Tensor:
    """``True`` at the steps that count: unpadded and not labelled ``-100``."""
    labelled = target != IGNORE_INDEX
    return labelled if mask is None else labelled & mask


def _labelled_count(y: Tensor | None, mask: Tensor | None) -> int:
    """How many steps count (one host synchronisation when ``y`` is on a GPU)."""
    return 0 if y is None else int(_keep(y, mask).sum())
