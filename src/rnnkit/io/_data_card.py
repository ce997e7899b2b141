"""The checkpoint's optional ``"data"`` section: class labels and scalers saved with the model.

Written by :func:`~rnnkit.io.checkpoint.make_checkpoint` when the model has any of them::

    "data": {"classes": ["run", "walk"],
             "input_scaler": {"mean": Tensor (F,), "std": Tensor (F,)},
             "target_scaler": {"mean": ..., "std": ...}}

Plain values only (labels are Python ``str``/``int``/``float``/``bool``, all of one type), so
the file still loads with ``weights_only=True``. The section is data: every field is checked
(types, sizes against the saved config, and the statistics by
:func:`~rnnkit.data.statistics_problem`, as the model's setters do) before a model takes it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from rnnkit.data import LABEL_TYPES, Standardizer, plain_label, statistics_problem
from rnnkit.errors import CorruptCheckpointError
from rnnkit.io._safe_load import corrupt
from rnnkit.models.base import RecurrentModel, unwrap_model

__all__ = ["check_data_section", "data_section", "restore_data_card", "saved_data_card"]

SCALERS = ("input_scaler", "target_scaler")
KEYS = ("classes", *SCALERS)
# Which config field gives each entry's size: C for the labels, H_in and H_y for the scalers.
_SIZE_FIELD = {
    "classes": "num_classes",
    "input_scaler": "input_size",
    "target_scaler": "output_size",
}


def data_section(model: nn.Module) -> dict[str, Any] | None:
    """The ``"data"`` section for ``model`` (wrappers unwrapped), or ``None`` if it has none."""
    inner = unwrap_model(model)
    if not isinstance(inner, RecurrentModel):
        return None
    section: dict[str, Any] = {}
    if inner.classes is not None:
        section["classes"] = [plain_label(label) for label in inner.classes.tolist()]
    for key in SCALERS:
        scaler: Standardizer | None = getattr(inner, key)
        if scaler is not None:
            section[key] = scaler.state_dict()
    return section or None


def check_data_section(checkpoint: dict[str, Any], path: Path) -> None:
    """Raise unless the checkpoint's ``"data"`` section (when present) is well formed.

    Raises:
        rnnkit.CorruptCheckpointError: Naming the first bad field.
    """
    if "data" not in checkpoint:
        return
    section = checkpoint["data"]
    if not isinstance(section, dict) or not section or set(section) - set(KEYS):
        held = f"keys {sorted(map(str, section))}" if isinstance(section, dict) else "no keys"
        what = f" is a {type(section).__name__} with {held}, not a dict with some of {list(KEYS)}"
        raise _bad(path, what)
    config = checkpoint["model"]["config"]
    for key, value in section.items():
        problem = _classes_problem(value) if key == "classes" else _scaler_problem(value)
        size = config.get(_SIZE_FIELD[key]) if isinstance(config, dict) else None
        problem = problem or _size_problem(key, value, size, config)
        if problem:
            raise _bad(path, f"[{key!r}]" + ("" if problem[0] == "[" else " ") + problem)


def saved_data_card(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The class labels and scalers saved in a checkpoint, ready to set on its model.

    Args:
        checkpoint: A dict from :func:`~rnnkit.load_checkpoint` (so its ``"data"`` section,
            if any, has been checked).

    Returns:
        ``{"classes": numpy.ndarray, "input_scaler": Standardizer, "target_scaler":
        Standardizer}``, with only the entries the checkpoint holds (empty without a
        ``"data"`` section).
    """
    card: dict[str, Any] = {}
    for key, value in checkpoint.get("data", {}).items():
        if key == "classes":
            card[key] = np.array(value)
        else:
            scaler = Standardizer()
            scaler.load_state_dict(value)
            card[key] = scaler
    return card


def restore_data_card(checkpoint: dict[str, Any], model: nn.Module) -> None:
    """Set the saved labels and scalers on ``model`` (an rnnkit model; others are skipped)."""
    inner = unwrap_model(model)
    if isinstance(inner, RecurrentModel):
        for key, value in saved_data_card(checkpoint).items():
            setattr(inner, key, value)


def _bad(path: Path, what: str) -> CorruptCheckpointError:
    return corrupt(path, f"malformed (its checkpoint['data']{what})")


def _classes_problem(value: object) -> str | None:
    if not isinstance(value, list) or not value:
        return f"is a {type(value).__name__}, not a non-empty list of labels"
    for k, label in enumerate(value):
        if type(label) not in LABEL_TYPES:
            return f"[{k}] is a {type(label).__name__}; labels are str, int, float or bool"
        if isinstance(label, float) and not math.isfinite(label):
            return f"[{k}] is {label!r}; float labels must be finite"
    odd = [k for k, label in enumerate(value) if type(label) is not type(value[0])]
    if odd:  # numpy would turn [1, "1"] into two equal strings, [1, 1.5] into floats
        first, other = type(value[0]).__name__, type(value[odd[0]]).__name__
        return f"[{odd[0]}] is of type {other} but [0] of type {first}; labels have one type"
    if len(set(value)) != len(value):
        return "holds a label twice"
    as_stored = np.asarray(value).tolist()  # numpy drops trailing NULs of strings
    if len(set(as_stored)) != len(as_stored):
        return "holds two labels that are equal once stored (strings differing in trailing NULs)"
    return None


def _scaler_problem(value: object) -> str | None:
    if not isinstance(value, dict) or set(value) != {"mean", "std"}:
        return "is not a dict with exactly the keys 'mean' and 'std'"
    return statistics_problem(value["mean"], value["std"])


def _size_problem(key: str, value: Any, size: object, config: object) -> str | None:
    """How the entry disagrees with the saved config's size, or ``None``."""
    if not isinstance(config, dict):
        return None  # no config to compare with; such a model is not rebuilt from the file
    if type(size) is not int:
        field = _SIZE_FIELD[key]
        return f"is saved for a model without an int {field!r} in its config"
    got = len(value) if key == "classes" else tuple(value["mean"].shape)
    if key == "classes":
        return None if got == size else f"holds {got} labels, but num_classes is {size}"
    return None if got in ((), (size,)) else f"has shape {got}, but the model has {size} features"
