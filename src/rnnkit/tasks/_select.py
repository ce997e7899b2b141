"""The task of each of rnnkit's models: :func:`task_for`."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from rnnkit.metrics import Metric
from rnnkit.models.classifier import SequenceClassifier
from rnnkit.models.regressor import Seq2SeqRegressor
from rnnkit.models.tagger import SequenceTagger
from rnnkit.tasks._base import LossFn, Task
from rnnkit.tasks._classification import ClassificationTask
from rnnkit.tasks._regression import RegressionTask
from rnnkit.tasks._tagging import TaggingTask

__all__ = ["task_for"]


def task_for(
    model: nn.Module,
    *,
    loss: LossFn | None = None,
    metrics: Sequence[str | Metric] | None = None,
    tbptt_steps: int | None = None,
    rollout_horizon: int | None = None,
) -> Task:
    """The task that trains one of rnnkit's models (a subclass's too).

    Args:
        model: A :class:`~rnnkit.SequenceClassifier`, :class:`~rnnkit.Seq2SeqRegressor` or
            :class:`~rnnkit.SequenceTagger`.
        loss: A user loss, or ``None`` for the task's default.
        metrics: Metric names or objects, or ``None`` for the task's defaults.
        tbptt_steps: Truncated back-propagation window (regressors only).
        rollout_horizon: Free-running steps scored in evaluation (regressors only).

    Returns:
        A :class:`~rnnkit.tasks.ClassificationTask`, :class:`~rnnkit.tasks.RegressionTask` or
        :class:`~rnnkit.tasks.TaggingTask`.

    Raises:
        TypeError: ``model`` is none of rnnkit's models (then pass a task to the Trainer).
        ValueError: A regressor's option for another model, or an unknown metric name.
    """
    if isinstance(model, Seq2SeqRegressor):
        return RegressionTask(
            loss, metrics, tbptt_steps=tbptt_steps, rollout_horizon=rollout_horizon
        )
    _refuse_sequence_options(model, tbptt_steps=tbptt_steps, rollout_horizon=rollout_horizon)
    if isinstance(model, SequenceClassifier):
        return ClassificationTask(loss, metrics)
    if isinstance(model, SequenceTagger):
        return TaggingTask(loss, metrics)
    raise TypeError(
        "Expected `model` to be one of rnnkit's models (SequenceClassifier, Seq2SeqRegressor, "
        "SequenceTagger, or a subclass), or a task saying how to train it, but got "
        f"{type(model).__name__} and no task. Hint: for a module returning (N, C) logits from "
        "forward(x) or forward(x, lengths), pass Trainer(task=rnnkit.tasks.ClassificationTask())."
    )


def _refuse_sequence_options(model: nn.Module, **options: int | None) -> None:
    for option, value in options.items():
        if value is not None:
            raise ValueError(
                f"Expected `{option}` only for a Seq2SeqRegressor, but the model is a "
                f"{type(model).__name__}. Hint: leave `{option}` at its default."
            )
