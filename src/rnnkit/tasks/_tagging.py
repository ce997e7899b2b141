"""The task of a :class:`~rnnkit.SequenceTagger`: a class at every step (sequence labelling).

``model(x, lengths) -> (N, L, C)`` logits against per-step class indices ``(N, L)``. Padded
steps (beyond ``lengths``) and steps labelled :data:`IGNORE_INDEX` count nowhere: not in the
loss, its gradient, the accuracy, nor the number of steps the loss is averaged over.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.data import Batch
from rnnkit.data.dataset import IGNORE_INDEX
from rnnkit.shapes import State
from rnnkit.tasks import Chunk, Parts, Task

__all__ = ["TaggerTask"]


class TaggerTask(Task):
    """Per-step classification: cross-entropy over the labelled, unpadded steps.

    A user loss gets only those steps, flattened: logits ``(M, C)`` and targets ``(M,)``.
    """

    kind = "tagger"
    default_metrics = ("accuracy",)

    def chunks(self, batch: Batch) -> Iterator[Chunk]:
        """The whole batch, once, with the valid-step mask and the count of labelled steps."""
        x, y, lengths = batch
        steps = int(x.shape[1])
        mask = None
        if lengths is not None and bool((lengths < steps).any()):
            valid = torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)
            mask = valid.to(x.device, non_blocking=True)
        yield Chunk(x, y, lengths, mask, _labelled_count(y, mask))

    def forward(
        self,
        model: nn.Module,
        chunk: Chunk,
        state: State | None,
        ratio: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, State | None]:
        """``model(x, lengths)``, batch-first (``x`` and the logits transposed if time-major)."""
        time_major = getattr(model, "batch_first", True) is False
        x = chunk.x.transpose(0, 1) if time_major else chunk.x
        logits = model(x) if chunk.lengths is None else model(x, chunk.lengths)
        return (logits.transpose(0, 1) if time_major else logits), None

    def loss(self, output: Tensor, chunk: Chunk) -> Tensor:
        """Mean cross-entropy over the labelled steps, or the user's loss on them."""
        if self.loss_fn is not None:
            keep = _keep(chunk.target, chunk.mask)
            return self.loss_fn(output[keep], chunk.target[keep])
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
    """``True`` at the steps that count: unpadded and not labelled :data:`IGNORE_INDEX`."""
    labelled = target != IGNORE_INDEX
    return labelled if mask is None else labelled & mask


def _labelled_count(y: Tensor | None, mask: Tensor | None) -> int:
    """How many steps count (one host synchronisation when ``y`` is on a GPU)."""
    return 0 if y is None else int(_keep(y, mask).sum())
