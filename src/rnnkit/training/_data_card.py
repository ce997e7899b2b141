"""Give the model what it needs to read raw data and return original labels, before a fit.

An rnnkit model carries ``classes``, ``input_scaler`` and ``target_scaler`` (see
:class:`~rnnkit.models.base.RecurrentModel`). At the start of a fit they are taken, where the
model has none, from the checkpoint being resumed and from the training
:class:`~rnnkit.data.SequenceDataset`; a value that contradicts the model's is an error before
any step, since the saved model would otherwise decode or scale with the wrong mapping. The
check comes before the fit takes anything from the checkpoint, and the values are set only
once the run is set up.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from rnnkit.data import SequenceDataset, Standardizer
from rnnkit.io.checkpoint import saved_data_card
from rnnkit.models.base import RecurrentModel, unwrap_model

__all__ = ["apply_data_card", "check_data_card", "dataset_card"]

_KEYS = ("classes", "input_scaler", "target_scaler")


def check_data_card(
    model: nn.Module, train: Any, checkpoint: dict[str, Any] | None
) -> dict[str, Any]:
    """The labels and scalers ``model`` will hold: its own, else the checkpoint's, else the data's.

    Nothing is set (see :func:`apply_data_card`): the fit calls this before it takes any state
    from the checkpoint, so a refused resume leaves the Trainer as it was.

    Args:
        model: The model to train (wrappers unwrapped; other than rnnkit's models, skipped).
        train: The training data; only a :class:`~rnnkit.data.SequenceDataset` has labels
            and statistics to give.
        checkpoint: The checked checkpoint being resumed, or ``None``.

    Returns:
        ``{"classes": ..., "input_scaler": ..., "target_scaler": ...}`` (values may be
        ``None``), or ``{}`` for a model that is not an rnnkit model.

    Raises:
        ValueError: The checkpoint or the data has other classes or statistics than the model.
    """
    inner = unwrap_model(model)
    if not isinstance(inner, RecurrentModel):
        return {}
    num_classes = getattr(inner.config, "num_classes", None)
    sources = [
        ("the checkpoint resumed", {} if checkpoint is None else saved_data_card(checkpoint)),
        ("the training data", dataset_card(train, num_classes=num_classes)),
    ]
    card = {key: getattr(inner, key) for key in _KEYS}
    for where, values in sources:
        for key, value in values.items():
            if card[key] is None:
                card[key] = value
            elif not _same(card[key], value):
                raise _conflict(key, card[key], value, where)
    return card


def apply_data_card(model: nn.Module, card: dict[str, Any]) -> None:
    """Set a card from :func:`check_data_card` on ``model`` (wrappers unwrapped)."""
    inner = unwrap_model(model)
    for key, value in card.items():
        setattr(inner, key, value)


def dataset_card(train: Any, *, num_classes: int | None = None) -> dict[str, Any]:
    """The ``classes`` and ``input_scaler`` a training dataset implies (only those it has).

    The labels are given only to a model with as many classes as the dataset (``num_classes``):
    a model with more classes than the data show keeps ``classes`` unset, since which labels
    the others stand for is not known.

    The input scaler maps raw stored inputs to what the model sees: the dataset computes
    ``(x * scale - mean) / std``, which is ``(x - mean / scale) / (std / scale)``.
    """
    if not isinstance(train, SequenceDataset):
        return {}
    card: dict[str, Any] = {}
    if train.classes is not None and len(train.classes) == num_classes:
        card["classes"] = train.classes
    if train.mean is not None or train.std is not None or train.scale is not None:
        scale = 1.0 if train.scale is None else train.scale
        mean = torch.zeros(train.input_size) if train.mean is None else train.mean.cpu()
        std = torch.ones(train.input_size) if train.std is None else train.std.cpu()
        scaler = Standardizer()
        scaler.load_state_dict({"mean": mean / scale, "std": std / scale})
        card["input_scaler"] = scaler
    return card


def _same(current: Any, other: Any) -> bool:
    if isinstance(current, Standardizer):
        size = max(current.mean.numel(), other.mean.numel())
        return all(
            torch.allclose(a.expand(size), b.expand(size), rtol=1e-6, atol=0.0)
            for a, b in ((current.mean, other.mean), (current.std, other.std))
        )
    return bool(np.array_equal(np.asarray(current), np.asarray(other)))


def _conflict(key: str, current: Any, other: Any, where: str) -> ValueError:
    def shown(value: Any) -> str:
        if isinstance(value, Standardizer):
            return f"mean {value.mean.tolist()}, std {value.std.tolist()}"
        return repr(np.asarray(value).tolist())

    return ValueError(
        f"Expected {where} to have the model's `{key}` ({shown(current)}), but it has "
        f"{shown(other)}. Nothing was trained. Hint: train on data prepared the same way "
        f"(e.g. pass `classes=` and apply the same Standardizer), or set `model.{key} = None` "
        "to take the new one."
    )
