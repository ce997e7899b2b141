"""Many-to-one classification: one row of logits per sequence."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.tasks._base import Chunk, Task, check_labels_fit
from rnnkit.tasks._info import DataInfo

__all__ = ["ClassificationTask"]


class ClassificationTask(Task):
    """Classify whole sequences: ``model(x)`` or ``model(x, lengths)`` returns ``(N, C)`` logits.

    The targets are class indices ``(N,)``; the default loss is cross-entropy and the default
    metric ``"accuracy"``. :class:`~rnnkit.SequenceClassifier` gets this task automatically;
    pass one to :class:`~rnnkit.Trainer` (``Trainer(task=ClassificationTask())``) to train any
    other module with that ``forward``. A model with a ``num_classes`` attribute has its
    labels checked against it before training.

    Args:
        loss: ``loss(logits, targets) -> 0-dim Tensor``, or ``None`` for cross-entropy.
        metrics: Metric names or objects for class targets; ``None``: ``["accuracy"]``.

    Shapes:
        - ``x``: ``(N, L, H_in)``; ``lengths``: ``(N,)``; output: ``(N, C)``; ``y``: ``(N,)``.
    """

    target_kind = "class"
    metric_kind = "class"
    default_metrics = ("accuracy",)

    def check_data(self, model: nn.Module, info: DataInfo, name: str) -> None:
        """Also check the labels against the model's ``num_classes`` (when it has one).

        Raises:
            ValueError: Labels beyond ``num_classes``, or targets that are not class indices.
            rnnkit.errors.ShapeError: The wrong sequence width.
        """
        super().check_data(model, info, name)
        check_labels_fit(model, info, name)

    def describe_targets(self) -> str:
        """``"class indices (N,)"``."""
        return "class indices (N,)"

    def target_hint(self, info: DataInfo) -> str:
        """Per-step values or labels need a per-step model and task."""
        if info.target_kind == "tag":
            return "use a SequenceTagger for a class label at every step"
        return "use a Seq2SeqRegressor for per-step targets, or give one label per sequence"

    def loss(self, output: Tensor, chunk: Chunk) -> Tensor:
        """Cross-entropy over the batch, or the user's loss."""
        if self.loss_fn is not None:
            return self.user_loss(output, chunk.target)
        return F.cross_entropy(output, chunk.target)
