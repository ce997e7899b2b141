"""Tasks: what training, evaluating and predicting mean for each kind of model.

A :class:`Task` owns everything that depends on the kind of model: how a batch becomes the
model's inputs (one :class:`Chunk`, or truncated back-propagation windows), how the model is
called, the default loss and metrics, which data fit the model (checked before training, from
a :class:`DataInfo`), and what ``predict`` returns. The :class:`~rnnkit.Trainer` runs any
:class:`torch.nn.Module` that a task describes:

- :class:`ClassificationTask`: ``model(x)`` or ``model(x, lengths)`` returns ``(N, C)``
  logits; class targets ``(N,)``; cross-entropy and accuracy by default.
- :class:`RegressionTask`: ``model(x, h0, lengths)`` returns ``((N, L, H_y), h_n)``; per-step
  targets ``(N, L, H_y)``; mean squared error over the valid steps and MAE by default.
- :class:`TaggingTask`: ``model(x)`` or ``model(x, lengths)`` returns ``(N, L, C)`` logits;
  class labels per step ``(N, L)`` (``-100`` for a step to skip); cross-entropy and accuracy
  over the labelled, unpadded steps by default.

rnnkit's own models get theirs from :func:`task_for`; pass ``Trainer(task=...)`` for others.

This layer may import ``rnnkit.models``, ``rnnkit.data``, ``rnnkit.metrics`` and the
layers below; never the callbacks or the Trainer.
"""

from __future__ import annotations

from rnnkit.tasks._base import Chunk, LossFn, Parts, Task, detach_state, resolve_metrics
from rnnkit.tasks._classification import ClassificationTask
from rnnkit.tasks._info import DataInfo, info_from_batch
from rnnkit.tasks._regression import RegressionTask
from rnnkit.tasks._select import task_for
from rnnkit.tasks._tagging import TaggingTask

__all__ = [
    "Chunk",
    "ClassificationTask",
    "DataInfo",
    "LossFn",
    "Parts",
    "RegressionTask",
    "TaggingTask",
    "Task",
    "detach_state",
    "info_from_batch",
    "resolve_metrics",
    "task_for",
]
