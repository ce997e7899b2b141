"""Class labels of any kind (strings, 1-based integers, ...) as indices ``0..C-1`` and back.

Labels are encoded in sorted order of their distinct values, so ``["walk", "run", "walk"]``
becomes ``[1, 0, 1]`` with ``classes = ["run", "walk"]``: the same labels always give the same
indices. Encode a test set with the training set's ``classes`` so that both agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["LABEL_TYPES", "decode_labels", "encode_labels", "plain_label"]

LABEL_TYPES = (str, int, float, bool)
"""The Python types a class label is saved as (numpy's scalar types count as their kin)."""


def encode_labels(
    labels: Any,
    classes: Sequence[Any] | np.ndarray[Any, Any] | None = None,
    *,
    name: str = "labels",
) -> tuple[Tensor, np.ndarray[Any, Any]]:
    """Encode labels as class indices: ``classes[codes[i]] == labels[i]``.

    Args:
        labels: N labels: a list, :class:`numpy.ndarray` or :class:`torch.Tensor` of strings,
            integers, or other comparable values.
        classes: The known classes, in index order (e.g. a training set's ``classes``); by
            default the sorted distinct values of ``labels``.
        name: The argument name used in error messages.

    Returns:
        ``(codes, classes)``: ``int64`` class indices and the classes as an array.

    Raises:
        ValueError: No labels, a missing label (``None``, NaN, ``pandas.NA``), or a label
            that is not among ``classes`` (the first is named).
        TypeError: Floating-point labels with a fractional part (regression targets, not
            classes), or labels that mix strings and numbers.

    Shapes:
        - ``labels``: ``(N,)``; returns ``codes`` ``(N,)`` and ``classes`` ``(C,)``.
    """
    values = label_array(labels, name)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(
            f"Expected `{name}` to hold N >= 1 labels of shape (N,), but got shape {values.shape}."
        )
    _check_not_continuous(values)
    known = np.unique(values) if classes is None else np.asarray(classes)
    codes = np.searchsorted(known, values) if _is_sorted(known) else _lookup(known, values)
    codes = np.clip(codes, 0, len(known) - 1)
    missing = known[codes] != values
    if bool(np.any(missing)):
        i = int(np.flatnonzero(missing)[0])
        raise unknown_label(known, f"{name}[{i}]", values.tolist()[i])
    return torch.from_numpy(codes.astype(np.int64)), known


def unknown_label(known: np.ndarray[Any, Any], where: str, label: Any) -> ValueError:
    """The error for a ``label`` at ``where`` (e.g. ``y[3]``) that is not among ``known``."""
    return ValueError(
        f"Expected every label to be one of the {len(known)} classes {known.tolist()}, but "
        f"`{where}` is {label!r}. Hint: a class absent from the training labels cannot be "
        "predicted; check both sets use the same label spelling."
    )


def decode_labels(indices: Any, classes: np.ndarray[Any, Any]) -> Any:
    """The labels ``classes[indices]``, with the shape of ``indices``.

    Raises:
        TypeError: ``indices`` are not integers.
        ValueError: An index lies outside ``[0, len(classes))``.
    """
    idx = _as_array(indices)
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(
            f"Expected integer class indices, but got dtype {idx.dtype}. Hint: turn class "
            "scores (N, C) into indices with `.argmax(-1)`."
        )
    bad = (idx < 0) | (idx >= len(classes))
    if bool(np.any(bad)):
        first = np.argwhere(bad)[0]
        raise ValueError(
            f"Expected class indices in [0, {len(classes)}), but got {int(idx[tuple(first)])}."
        )
    decoded = classes[idx]
    return decoded.item() if decoded.ndim == 0 else decoded


def plain_label(value: Any) -> Any:
    """``value`` as a plain Python ``bool``/``int``/``float``/``str`` where it is one.

    A numpy scalar becomes its Python value and a subclass of a label type becomes the plain
    type, so that labels can be saved as plain data; anything else is returned unchanged.
    """
    value = value.item() if isinstance(value, np.generic) else value
    for kind in LABEL_TYPES[::-1]:  # bool first: a bool is also an int
        if isinstance(value, kind):
            return kind(value)
    return value


def label_array(
    labels: Any, name: str, labelled: np.ndarray[Any, Any] | None = None
) -> np.ndarray[Any, Any]:
    """``labels`` as an array, refusing a missing label and a mix of strings and numbers.

    Left to numpy, ``["a", 1]`` silently becomes the strings ``["a", "1"]`` and a ``None``
    fails later on sorting; both are named here instead (``None``, NaN, ``pandas.NA`` and
    ``NaT`` count as missing; so does NaN in a floating array, the form in which numpy gets
    pandas' nullable ``Int64`` with ``NA``). Only the positions where ``labelled`` (a boolean
    array of the labels' shape) is true are checked.
    """
    values = _as_array(labels)
    if values.dtype.kind == "O":
        _check_one_kind(values, name, labelled)
    elif values.dtype.kind == "U" and not isinstance(labels, np.ndarray):  # coerced by numpy
        _check_one_kind(np.asarray(labels, dtype=object), name, labelled)
    elif values.dtype.kind in "fc":  # before the fractional-part check, which NaN also fails
        _check_no_nan(values, name, labelled)
    return values


def _check_one_kind(
    objects: np.ndarray[Any, Any], name: str, labelled: np.ndarray[Any, Any] | None
) -> None:
    first: dict[str, tuple[tuple[int, ...], Any]] = {}  # kind -> (index, label), its first
    for index, value in np.ndenumerate(objects):
        if labelled is not None and not labelled[index]:
            continue
        if _missing(value):
            raise _missing_label(name, index, value)
        first.setdefault(_kind(value), (index, value))
    if len(first) > 1:
        shown = " and ".join(f"{k} ({v!r} at `{_at(name, i)}`)" for k, (i, v) in first.items())
        raise TypeError(
            f"Expected the labels in `{name}` to be of one type, but got {shown}. Hint: "
            "convert them to one type first, e.g. all to strings."
        )


def _check_no_nan(
    values: np.ndarray[Any, Any], name: str, labelled: np.ndarray[Any, Any] | None
) -> None:
    missing = np.isnan(values) if labelled is None else np.isnan(values) & labelled
    if bool(np.any(missing)):
        index = tuple(int(i) for i in np.argwhere(missing)[0])
        raise _missing_label(name, index, values[index].item())


def _missing_label(name: str, index: tuple[int, ...], value: Any) -> ValueError:
    return ValueError(
        f"Expected every label in `{name}` to be set, but `{_at(name, index)}` is {value!r}. "
        "Hint: drop the unlabelled samples, or give them a class of their own."
    )


def _at(name: str, index: tuple[int, ...]) -> str:
    return f"{name}[{', '.join(map(str, index))}]"


def _missing(value: Any) -> bool:
    """Whether ``value`` marks a missing label: None, NaN, ``pandas.NA`` or ``NaT``."""
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return True
    return isinstance(value, (float, np.floating)) and value != value


def _kind(value: Any) -> str:
    if isinstance(value, (str, np.str_)):
        return "strings"
    if isinstance(value, (bool, int, float, np.number, np.bool_)):
        return "numbers"
    return type(value).__name__


def _as_array(values: Any) -> np.ndarray[Any, Any]:
    if isinstance(values, Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _check_not_continuous(values: np.ndarray[Any, Any]) -> None:
    if np.issubdtype(values.dtype, np.floating) and not bool(
        np.all(np.isfinite(values) & (values == np.round(values)))
    ):
        raise TypeError(
            "Expected class labels, but got floating-point values with a fractional part (or "
            "infinite ones). Hint: regression targets go in as per-step targets (N, L_y, H_y); "
            "add the feature axis with y[..., None]."
        )


def _is_sorted(known: np.ndarray[Any, Any]) -> bool:
    return bool(np.all(known[:-1] < known[1:])) if len(known) > 1 else True


def _lookup(known: np.ndarray[Any, Any], values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Indices of ``values`` in an unsorted ``known`` (0 where absent; caught by the caller)."""
    position = {value: k for k, value in enumerate(known.tolist())}
    return np.array([position.get(value, 0) for value in values.tolist()], dtype=np.int64)
