"""What a model knows of its data: the original class labels and the scalers' statistics.

The checks behind :attr:`RecurrentModel.classes`, ``input_scaler`` and ``target_scaler``. They
run whenever an attribute is set (by hand, by the :class:`~rnnkit.Trainer` or from a
checkpoint), so a model never holds a value a checkpoint could not store.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rnnkit.data import LABEL_TYPES, Standardizer, plain_label, statistics_problem

__all__ = ["check_classes", "check_scaler", "plain_labels"]


def plain_labels(classes: np.ndarray[Any, Any]) -> list[Any]:
    """The labels as Python ``str``/``int``/``float``/``bool`` values, in index order.

    Raises:
        TypeError: A label of another type (e.g. a date or a tuple), or labels of two types
            (``bool`` and ``int`` count as two).
        ValueError: A float label that is NaN or infinite.
    """
    values = [plain_label(value) for value in classes.tolist()]
    for k, value in enumerate(values):
        if type(value) not in LABEL_TYPES:
            raise TypeError(
                f"Expected every class label to be a str, int, float or bool, but "
                f"`classes[{k}]` is a {type(value).__name__} ({value!r}). Hint: map the labels "
                "to strings first, e.g. [str(label) for label in labels]."
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"Expected finite class labels, but `classes[{k}]` is {value!r}.")
        if type(value) is not type(values[0]):
            raise TypeError(
                f"Expected every class label to have one type, but `classes[0]` is of type "
                f"{type(values[0]).__name__} and `classes[{k}]` of type {type(value).__name__}. "
                "Hint: map the labels to one type first, e.g. [str(label) for label in labels]."
            )
    return values


def check_classes(classes: Any, num_classes: int | None, model: str) -> np.ndarray[Any, Any] | None:
    """Check labels for a model with ``num_classes`` classes; return them as a new read-only array.

    Args:
        classes: ``None``, or the original label of each class index.
        num_classes: The model's C, or ``None`` for a model that predicts values.
        model: The model's class name, for messages.

    Raises:
        ValueError: Labels for a model without classes, not C distinct labels, or NaN.
        TypeError: A label that is not a str, int, float or bool.
    """
    if classes is None:
        return None
    if num_classes is None:
        raise ValueError(
            f"Expected `classes` only on a model that predicts classes, but a {model} predicts "
            "values. Hint: a SequenceClassifier or SequenceTagger takes `classes`."
        )
    raw = np.asarray(classes, dtype=object)  # as given: np.array(["cat", 7]) makes "7" a str
    if raw.ndim != 1 or len(raw) != num_classes:
        raise ValueError(
            f"Expected `classes` to have shape (C,) = ({num_classes},), one label per class "
            f"index, but got {raw.shape}. Hint: pass the training dataset's `classes`."
        )
    if {type(plain_label(v)) for v in raw} == {int, float}:  # [0.5, 1, 2]: numbers, as numpy
        raw = np.array([float(v) for v in raw], dtype=object)
    values = plain_labels(raw)
    if len(set(values)) != len(values):
        raise ValueError(f"Expected `classes` to be distinct labels, but got {values!r}.")
    labels = np.array(values)
    labels.setflags(write=False)  # edited in place, it would escape these checks
    return labels


def check_scaler(scaler: Any, name: str, size: int | None, model: str) -> Standardizer | None:
    """Check a fitted :class:`~rnnkit.data.Standardizer` of ``size`` features; return a copy.

    Args:
        scaler: ``None`` or the standardizer.
        name: ``"input_scaler"`` or ``"target_scaler"``.
        size: The features it must have (H_in or H_y), or ``None`` where it does not apply.
        model: The model's class name, for messages.

    Raises:
        TypeError: Not a Standardizer.
        ValueError: Not fitted, statistics a checkpoint could not store (see
            :func:`~rnnkit.data.statistics_problem`), of the wrong size, or for a model
            without such values.
    """
    if scaler is None:
        return None
    if not isinstance(scaler, Standardizer):
        raise TypeError(
            f"Expected `{name}` to be a rnnkit.data.Standardizer or None, but got "
            f"{type(scaler).__name__}."
        )
    if size is None:
        raise ValueError(
            f"Expected `{name}` only on a model that predicts values, but a {model} predicts "
            "classes. Hint: a classifier's outputs have no units to restore."
        )
    if not scaler.is_fitted:
        raise ValueError(f"Expected a fitted `{name}`. Hint: call `fit(series)` first.")
    problem = statistics_problem(scaler.mean, scaler.std)
    if problem:
        gap = "" if problem.startswith("[") else " "
        raise ValueError(
            f"Expected `{name}` to hold finite statistics with every std > 0, but its "
            f"state_dict(){gap}{problem}. Hint: fit it on the training data, or correct the "
            "values given to `load_state_dict`."
        )
    shape = tuple(scaler.mean.shape)
    if shape not in ((), (size,)) or tuple(scaler.std.shape) != shape:
        raise ValueError(
            f"Expected `{name}` to have statistics of shape (F,) = ({size},), but got "
            f"{shape}. Hint: fit it on data with {size} features per step."
        )
    copy = Standardizer()
    copy.load_state_dict(scaler.state_dict())
    return copy
