"""rnnkit's models and the registry that rebuilds them from a checkpoint.

* :class:`rnnkit.SequenceClassifier`: many-to-one, sequences to class logits;
* :class:`rnnkit.Seq2SeqRegressor`: many-to-many, a value at every step, with
  free-running :meth:`rnnkit.Seq2SeqRegressor.generate` and closed-loop
  :meth:`rnnkit.Seq2SeqRegressor.rollout`;
* :class:`rnnkit.SequenceTagger`: many-to-many, a class at every step (sequence labelling);
* :class:`rnnkit.RecurrentEncoder`: the recurrent layers they all stand on.

A checkpoint stores ``{"class": type(model).__name__, "config": model.config.to_dict(), ...}``;
``MODEL_CLASSES[name].from_config(config)`` rebuilds the model before its weights are loaded.

This layer may import ``rnnkit.kernels``, ``rnnkit.shapes`` and ``rnnkit.errors``;
never tasks, io, callbacks or training.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rnnkit.models.base import RecurrentModel
from rnnkit.models.classifier import SequenceClassifier
from rnnkit.models.config import ClassifierConfig, ModelConfig, RegressorConfig, TaggerConfig
from rnnkit.models.encoder import RecurrentEncoder
from rnnkit.models.regressor import Seq2SeqRegressor
from rnnkit.models.tagger import SequenceTagger

__all__ = [
    "MODEL_CLASSES",
    "ClassifierConfig",
    "ModelConfig",
    "RecurrentEncoder",
    "RecurrentModel",
    "RegressorConfig",
    "Seq2SeqRegressor",
    "SequenceClassifier",
    "SequenceTagger",
    "TaggerConfig",
    "model_from_config",
]

MODEL_CLASSES: dict[str, type[RecurrentModel]] = {
    "SequenceClassifier": SequenceClassifier,
    "Seq2SeqRegressor": Seq2SeqRegressor,
    "SequenceTagger": SequenceTagger,
}
"""Every model class by name (``type(model).__name__``), as checkpoints record it."""


def model_from_config(config: ModelConfig | Mapping[str, Any]) -> RecurrentModel:
    """Build a fresh model of whatever class a config names.

    Args:
        config: A model config, or a mapping with a ``"model"`` key as ``config.to_dict()``
            returns it.

    Returns:
        A new model with random weights; load a ``state_dict`` into it next.

    Raises:
        ValueError: The mapping has no ``"model"`` key, or names an unknown class.
    """
    name = config.model_name if isinstance(config, ModelConfig) else config.get("model")
    if not isinstance(name, str) or name not in MODEL_CLASSES:
        raise ValueError(
            f"Expected the config's model to be one of {sorted(MODEL_CLASSES)}, but got "
            f"{name!r}. Hint: a mapping needs the 'model' key that config.to_dict() adds."
        )
    return MODEL_CLASSES[name].from_config(config)
