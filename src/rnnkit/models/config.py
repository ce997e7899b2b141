"""Typed, JSON-serialisable records of how a model was built.

Every rnnkit model keeps its constructor arguments in ``model.config``, a frozen dataclass.
``config.to_dict()`` is a plain dict (ints, floats, bools and strings only, so
:func:`json.dumps` takes it) with one more key, ``"model"``, naming the model class; a
checkpoint stores it, and ``Model.from_config(config_or_dict)`` rebuilds the same model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from typing_extensions import Self

from rnnkit.models.encoder import Nonlinearity
from rnnkit.models.initializers import InitScheme
from rnnkit.models.readouts import Readout
from rnnkit.shapes import CellType

__all__ = ["ClassifierConfig", "ModelConfig", "RegressorConfig", "TaggerConfig"]


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The options every rnnkit model shares: those of its recurrent encoder.

    Args:
        input_size: Features per step, H_in.
        hidden_size: State size H_cell.
        cell: ``"rnn"``, ``"lstm"`` or ``"gru"``.
        num_layers: Stacked recurrent layers.
        bidirectional: Whether every layer also runs backwards (D = 2).
        dropout: Dropout between stacked layers.
        proj_size: LSTM projection size (0 = none).
        nonlinearity: ``"tanh"`` or ``"relu"`` (``cell="rnn"`` only).
        batch_first: Whether tensors are laid out ``(N, L, ·)``.
        init: ``"default"``, ``"orthogonal"`` or ``"identity"``.
    """

    model_name: ClassVar[str] = ""

    input_size: int
    hidden_size: int
    cell: CellType = "rnn"
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    proj_size: int = 0
    nonlinearity: Nonlinearity = "tanh"
    batch_first: bool = True
    init: InitScheme = "default"

    def __post_init__(self) -> None:
        # NumPy scalars (np.int64(28) from an array's shape) pass the constructors' checks;
        # stored as plain Python values they reach torch, json and checkpoints as promised
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, np.generic):
                object.__setattr__(self, field.name, value.item())

    def kwargs(self) -> dict[str, Any]:
        """Return the fields as the model constructor's keyword arguments."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict: every field plus ``"model"``, the class name."""
        return {"model": self.model_name, **self.kwargs()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild a config from :meth:`to_dict`'s output.

        Args:
            data: The fields, and optionally ``"model"``, which must then name this config's
                model class.

        Returns:
            The config.

        Raises:
            ValueError: ``"model"`` names another class, or a key is unknown or missing.
        """
        fields = dict(data)
        model = fields.pop("model", cls.model_name)
        if model != cls.model_name:
            raise ValueError(
                f"Expected a config with model = {cls.model_name!r}, but got {model!r}. "
                f"Hint: rebuild it with {model}.from_config(...) instead."
            )
        _check_keys(cls, fields)
        return cls(**fields)


@dataclass(frozen=True, kw_only=True)
class ClassifierConfig(ModelConfig):
    """A :class:`rnnkit.SequenceClassifier`'s options.

    Args:
        num_classes: C, the number of classes (logits per sequence).
        hidden_size: State size H_cell (default 128).
        readout: ``"last"``, ``"mean"``, ``"max"`` or ``"output_last"``.
    """

    model_name: ClassVar[str] = "SequenceClassifier"

    num_classes: int
    hidden_size: int = 128
    readout: Readout = "last"


@dataclass(frozen=True, kw_only=True)
class RegressorConfig(ModelConfig):
    """A :class:`rnnkit.Seq2SeqRegressor`'s options.

    Args:
        output_size: H_y, values predicted per step.
        hidden_size: State size H_cell (default 16).
    """

    model_name: ClassVar[str] = "Seq2SeqRegressor"

    output_size: int
    hidden_size: int = 16


@dataclass(frozen=True, kw_only=True)
class TaggerConfig(ModelConfig):
    """A :class:`rnnkit.SequenceTagger`'s options.

    Args:
        num_classes: C, the number of classes (logits per step).
        hidden_size: State size H_cell (default 128).
    """

    model_name: ClassVar[str] = "SequenceTagger"

    num_classes: int
    hidden_size: int = 128


def _check_keys(cls: type[ModelConfig], fields: Mapping[str, Any]) -> None:
    known = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise ValueError(
            f"Expected {cls.__name__} keys from {sorted(known)}, but got unknown {unknown}."
        )
    missing = sorted(
        name
        for name, field in known.items()
        if name not in fields
        and field.default is dataclasses.MISSING
        and field.default_factory is dataclasses.MISSING
    )
    if missing:
        raise ValueError(f"Expected {cls.__name__} keys {missing}, but they are missing.")
