"""``Trainer.evaluate`` and ``Trainer.predict``: a model run outside the fit, fit untouched.

Both bind the model and task they run for their duration (:func:`bound`), so that the
evaluation and prediction steps, which read :attr:`rnnkit.Trainer.evaluated`, use them; a
callback may call either during ``fit`` and the fit's model, task and state stay as they were.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from rnnkit.tasks import Task, task_for
from rnnkit.training import _loops, _setup
from rnnkit.training._batches import as_source

if TYPE_CHECKING:
    from rnnkit.training.trainer import Trainer

__all__ = ["bound", "evaluate", "predict"]


@contextlib.contextmanager
def bound(trainer: Trainer, model: nn.Module, task: Task) -> Iterator[None]:
    """Run the evaluation or prediction steps on ``model`` and ``task``.

    See :attr:`rnnkit.Trainer.evaluated`: the fit's model and task are never touched.
    """
    outer, trainer._evaluating = trainer._evaluating, (model, task)
    try:
        yield
    finally:
        trainer._evaluating = outer


def evaluate(trainer: Trainer, model: nn.Module, data: Any) -> dict[str, float]:
    """The body of ``Trainer.evaluate``: check, then the evaluation loop on ``model``."""
    task = _setup.trainer_task(trainer, model)
    source = as_source(data, "data")
    _setup.check_task(trainer, task, model, [("data", source.info())])
    _setup.check_distributed(trainer, task, [source], None)
    _setup.check_each_batch(task, model, [source])
    trainer.distributed.setup()
    with bound(trainer, model.to(trainer.device), task):
        return _loops.evaluation_loop(trainer, source)


def predict(trainer: Trainer, model: nn.Module, data: Any) -> Tensor:
    """The body of ``Trainer.predict``: check the inputs, then the prediction loop."""
    trainer.precision_plugin.check_model(model)
    task = trainer.task or task_for(model, tbptt_steps=trainer.options.tbptt_steps)
    source = as_source(data, "data")
    task.check_inputs(model, source.info(), "data")
    with bound(trainer, model.to(trainer.device), task):
        return _loops.prediction_loop(trainer, source)
