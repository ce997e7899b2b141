"""Checkpoint files: the format, and safe, checked loads.

A checkpoint is one ``torch.save`` file holding only plain values, so that it loads with
``torch.load(..., weights_only=True)`` and never runs pickled code::

    {"format": "rnnkit-checkpoint", "format_version": 1, "rnnkit_version": "0.1.0",
     "model": {"class": "SequenceClassifier", "config": {...}, "state_dict": {...}},
     "trainer": Trainer.state_dict(), "callbacks": {"EarlyStopping": {...}, ...},
     "data": {"classes": [...], "input_scaler": {...}, "target_scaler": {...}}}

The ``"data"`` section is optional: the model's original class labels and scalers, present
only when the model has some (see :attr:`rnnkit.models.base.RecurrentModel.classes`).

:func:`~rnnkit.io.checkpoint.atomic_save` writes a temporary file
in the target's folder, flushes and fsyncs it, renames it over the target with
:func:`os.replace` and fsyncs the folder, so a crash at any moment leaves either the previous
file or the new one, never a mix. :func:`~rnnkit.load_checkpoint`
checks the file before trusting it and raises a distinct :class:`~rnnkit.errors.CheckpointError`
subclass for each way it can be wrong.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from rnnkit._version import __version__
from rnnkit.errors import (
    CheckpointError,
    CheckpointMismatchError,
    CheckpointVersionError,
    ForeignCheckpointError,
)
from rnnkit.io._atomic import (
    _type_name,
    atomic_copy,
    atomic_save,
    check_plain,
)
from rnnkit.io._config_checks import build_on_meta, check_config_values, count_problems
from rnnkit.io._data_card import (
    check_data_section,
    data_section,
    restore_data_card,
    saved_data_card,
)
from rnnkit.io._safe_load import check_container, check_file, corrupt, torch_load
from rnnkit.models.base import unwrap_model

if TYPE_CHECKING:
    from rnnkit.models.base import RecurrentModel

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "atomic_copy",
    "atomic_save",
    "check_compatible",
    "check_plain",
    "load_checkpoint",
    "load_model",
    "make_checkpoint",
    "saved_data_card",
]

FORMAT = "rnnkit-checkpoint"
"""The value of a checkpoint's ``"format"`` key."""

FORMAT_VERSION = 1
"""The newest checkpoint format version this rnnkit writes and reads."""


# ----------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------


def _model_config(model: nn.Module) -> dict[str, Any] | None:
    config = getattr(model, "config", None)
    to_dict = getattr(config, "to_dict", None)
    return dict(to_dict()) if callable(to_dict) else None


def make_checkpoint(
    model: nn.Module,
    trainer_state: Mapping[str, Any],
    callback_states: Mapping[str, Any],
) -> dict[str, Any]:
    """Assemble a checkpoint dict in the rnnkit format.

    The dict references the model's live tensors (nothing is copied), so save it at once,
    e.g. with :func:`~rnnkit.io.checkpoint.atomic_save`.

    Args:
        model: The model; wrappers (``torch.nn.DataParallel``, DDP, ``torch.compile``) are
            unwrapped. Its class name and ``config.to_dict()``
            (``None`` for a model without a ``config``) are recorded for :func:`~rnnkit.load_model`.
        trainer_state: ``Trainer.state_dict()``: optimizer, scheduler, epoch, RNG states, ...
        callback_states: ``{name: callback.state_dict()}`` for callbacks with state.

    Returns:
        ``{"format", "format_version", "rnnkit_version", "model": {"class", "config",
        "state_dict"}, "trainer", "callbacks"}``, and ``"data"`` when the model has
        ``classes``, an ``input_scaler`` or a ``target_scaler``.
    """
    inner = unwrap_model(model)
    checkpoint: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "rnnkit_version": __version__,
        "model": {
            "class": type(inner).__name__,
            "config": _model_config(inner),
            "state_dict": inner.state_dict(),
        },
        "trainer": dict(trainer_state),
        "callbacks": dict(callback_states),
    }
    data = data_section(inner)
    if data is not None:
        checkpoint["data"] = data
    return checkpoint


# ----------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------


def _describe_foreign(obj: object) -> tuple[str, str]:
    """What a foreign file holds, and how to read it."""
    if not isinstance(obj, dict):
        return f"a {_type_name(obj)}", "read it with torch.load(path, weights_only=True)"
    keys = ", ".join(repr(key) for key in list(obj)[:5]) + (", ..." if len(obj) > 5 else "")
    if obj and all(isinstance(value, torch.Tensor) for value in obj.values()):
        return (
            f"a dict of {len(obj)} tensors (keys {keys}), i.e. a bare model state_dict",
            "build the model yourself and call "
            "model.load_state_dict(torch.load(path, weights_only=True))",
        )
    where = "; its weights are probably under ['state_dict']" if "state_dict" in obj else ""
    return (
        f"a dict with keys {keys} and no 'format' entry",
        f"read it with torch.load(path, weights_only=True){where}",
    )


def _check_format(obj: object, path: Path) -> dict[str, Any]:
    if not isinstance(obj, dict) or "format" not in obj:
        held, hint = _describe_foreign(obj)
        raise ForeignCheckpointError(
            f"Expected {str(path)!r} to be an rnnkit checkpoint (a dict with 'format': "
            f"{FORMAT!r}), but it holds {held}. Hint: {hint}."
        )
    if obj["format"] != FORMAT:
        raise ForeignCheckpointError(
            f"Expected {str(path)!r} to have 'format': {FORMAT!r}, but it has "
            f"{obj['format']!r}, so it is not an rnnkit checkpoint. Hint: read it with "
            f"torch.load(path, weights_only=True)."
        )
    _check_version(obj, path)
    _check_layout(obj, path)
    check_data_section(obj, path)
    return obj


def _check_version(obj: dict[str, Any], path: Path) -> None:
    version = obj.get("format_version")
    if type(version) is not int or version < 1:
        raise corrupt(path, f"malformed (its 'format_version' is {version!r})")
    if version > FORMAT_VERSION:
        raise CheckpointVersionError(
            f"The checkpoint {str(path)!r} has format version {version} (written by rnnkit "
            f"{obj.get('rnnkit_version', '?')}), but this rnnkit {__version__} reads versions "
            f"up to {FORMAT_VERSION}. Hint: update rnnkit (pull its clone, then "
            "`pip install -e .` again)."
        )


_LAYOUT: tuple[tuple[tuple[str, ...], type | tuple[type, ...]], ...] = (
    (("rnnkit_version",), str),
    (("model",), dict),
    (("model", "class"), str),
    (("model", "config"), (dict, type(None))),
    (("model", "state_dict"), dict),
    (("trainer",), dict),
    (("callbacks",), dict),
)


def _check_layout(obj: dict[str, Any], path: Path) -> None:
    for keys, kind in _LAYOUT:
        value: Any = obj
        for key in keys:
            value = value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
        if not isinstance(value, kind):
            where = "checkpoint" + "".join(f"[{key!r}]" for key in keys)
            state = "missing" if value is _MISSING else f"a {_type_name(value)}"
            raise corrupt(path, f"malformed ({where} is {state})")


_MISSING = object()


def load_checkpoint(path: str | os.PathLike[str], *, map_location: Any = "cpu") -> dict[str, Any]:
    """Load and check an rnnkit checkpoint, never running pickled code.

    The file's zip index and every part's CRC are verified first, then it is read with
    ``torch.load(path, map_location=map_location, weights_only=True)`` and its format and
    layout are checked.

    Args:
        path: The checkpoint file.
        map_location: Where tensors are loaded, as for :func:`torch.load`; the CPU by default.

    Returns:
        The checkpoint dict (see :func:`~rnnkit.io.checkpoint.make_checkpoint`).

    Raises:
        rnnkit.CheckpointNotFoundError: No file at ``path``, or not a regular file (a folder,
            a FIFO, a device); a special file is never opened.
        rnnkit.errors.CheckpointError: The file exists but cannot be read (permissions), or
            ``map_location`` names a device this machine does not have.
        rnnkit.CorruptCheckpointError: The file is empty, truncated, damaged or not a PyTorch
            file, or its optional ``"data"`` section is malformed (labels that are not
            ``str``/``int``/``float``/``bool`` or not ``num_classes`` of them, scalers of the
            wrong size, not finite, or with a ``std`` <= 0).
        rnnkit.ForeignCheckpointError: A valid PyTorch file that is not an rnnkit checkpoint (a bare
            state_dict, another dict, pickled objects); the message says how to read it.
        rnnkit.CheckpointVersionError: Written in a newer format than this rnnkit reads.
    """
    file = Path(path)
    check_file(file)
    check_container(file)
    return _check_format(torch_load(file, map_location), file)


# ----------------------------------------------------------------------------------------
# Applying to models
# ----------------------------------------------------------------------------------------


def _config_diffs(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    missing = object()
    diffs = []
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key, missing), current.get(key, missing)
        if not _same_value(old, new):
            old_text = "absent" if old is missing else f"{old!r}"
            new_text = "absent" if new is missing else f"{new!r}"
            diffs.append(f"{key} (checkpoint {old_text}, model {new_text})")
    return diffs


def _same_value(old: object, new: object) -> bool:
    """Equal (numbers by value); a saved value that cannot be compared (a tensor) differs."""
    numbers = (int, float)
    if type(old) in numbers and type(new) in numbers:  # 0 and 0.0 are the same dropout
        return bool(old == new)
    if type(old) is not type(new):
        return False
    try:
        return bool(old == new)
    except (RuntimeError, TypeError, ValueError):
        return False


def _shape(value: object) -> object:
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None else type(value).__name__


def _shape_diffs(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    diffs = [f"{key} (missing from the model)" for key in saved if key not in current]
    diffs += [f"{key} (missing from the checkpoint)" for key in current if key not in saved]
    for key in (key for key in saved if key in current):
        old, new = _shape(saved[key]), _shape(current[key])
        if old != new:
            diffs.append(f"{key} (checkpoint {old}, model {new})")
    return diffs


def _mismatch(saved: Mapping[str, Any], what: str, diffs: list[str]) -> CheckpointMismatchError:
    shown = ", ".join(diffs[:8]) + (f", and {len(diffs) - 8} more" if len(diffs) > 8 else "")
    name = saved["class"]
    hint = (
        f"rebuild the model from the checkpoint with rnnkit.load_model(path), or with "
        f"{name}.from_config(checkpoint['model']['config'])"
        if saved["config"] is not None
        else f"build the {name} as it was when saved"
    )
    return CheckpointMismatchError(
        f"Expected the model to match the checkpoint's {name}, but its {what}: {shown}. "
        f"Hint: {hint}."
    )


def check_compatible(checkpoint: Mapping[str, Any], model: nn.Module) -> None:
    """Check that ``checkpoint`` can be loaded into ``model``.

    Compares, in order, the model class name, the config fields (``model.config.to_dict()``)
    and the parameter and buffer names and shapes.

    Args:
        checkpoint: A dict from :func:`~rnnkit.load_checkpoint`.
        model: The model to resume (wrappers are unwrapped).

    Raises:
        rnnkit.CheckpointMismatchError: Naming the differing class, config fields (with both
            values), or parameters (with both shapes).
    """
    inner = unwrap_model(model)
    saved = checkpoint["model"]
    if saved["class"] != type(inner).__name__:
        raise CheckpointMismatchError(
            f"Expected a checkpoint of a {type(inner).__name__}, but it was saved from a "
            f"{saved['class']}. Hint: rebuild the saved model with rnnkit.load_model(path)."
        )
    current = _model_config(inner)
    if saved["config"] is not None and current is not None:
        diffs = _config_diffs(saved["config"], current)
        if diffs:
            raise _mismatch(saved, "config differs", diffs)
    diffs = _shape_diffs(saved["state_dict"], inner.state_dict())
    if diffs:
        raise _mismatch(saved, "parameters differ", diffs)


def _model_class(name: str, path: Path) -> type[RecurrentModel]:
    from rnnkit.models import MODEL_CLASSES  # lazy: checkpoint must not need models

    if name not in MODEL_CLASSES:
        known = ", ".join(sorted(MODEL_CLASSES))
        raise CheckpointMismatchError(
            f"Expected the checkpoint {str(path)!r} to hold one of rnnkit's models ({known}), "
            f"but it holds a {name}, which load_model cannot rebuild. Hint: build a {name} "
            f"yourself and call model.load_state_dict(load_checkpoint(path)['model']"
            f"['state_dict'])."
        )
    return MODEL_CLASSES[name]


def load_model(path: str | os.PathLike[str], *, map_location: Any = "cpu") -> nn.Module:
    """Rebuild a ready model from a checkpoint, without knowing its class in advance.

    The class is looked up by name in ``rnnkit.models.MODEL_CLASSES``. Before anything is
    allocated, the config's fields are checked against the config class (names and types)
    and the model is built on the ``meta`` device (shapes only) to compare its parameter
    shapes with the saved weights. Only then is it built with
    ``from_config(checkpoint['model']['config'])``, loaded with the saved weights (strict)
    and put in evaluation mode (``model.eval()``). Saved class labels and scalers are set
    on it (``classes``, ``input_scaler``, ``target_scaler``), so ``predict_labels`` and
    ``forecast`` work in the original units at once.

    Args:
        path: The checkpoint file.
        map_location: Where the weights are loaded, as for :func:`torch.load`.

    Returns:
        The model, in evaluation mode, on the device given by ``map_location``, in the
        floating dtype its weights were saved in (``float32`` unless converted).

    Raises:
        rnnkit.errors.CheckpointError: Any error of :func:`~rnnkit.load_checkpoint`; a
            :class:`~rnnkit.CorruptCheckpointError` when the config is missing, has unknown or
            missing fields or values of the wrong type; a
            :class:`~rnnkit.CheckpointMismatchError` when the class is not an rnnkit model or
            the weights do not fit the model the config describes.
    """
    file = Path(path)
    checkpoint = load_checkpoint(file, map_location=map_location)
    saved = checkpoint["model"]
    cls = _model_class(saved["class"], file)
    _check_buildable(cls, saved, file)
    model = cls.from_config(saved["config"])
    check_compatible(checkpoint, model)
    # Built on the CPU in float32: move it where map_location put the weights, in the dtype
    # they were saved in (a model saved after model.double() comes back in float64).
    model.to(device=_loaded_device(saved["state_dict"]), dtype=_saved_dtype(saved["state_dict"]))
    model.load_state_dict(saved["state_dict"])
    restore_data_card(checkpoint, model)
    return model.eval()


_FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _loaded_device(state_dict: Mapping[str, Any]) -> torch.device | None:
    """The device ``map_location`` loaded the weights to (``None``: no tensor)."""
    return next((v.device for v in state_dict.values() if torch.is_tensor(v)), None)


def _saved_dtype(state_dict: Mapping[str, Any]) -> torch.dtype | None:
    """The one floating dtype of the saved weights, or ``None`` (none, or several)."""
    dtypes = {v.dtype for v in state_dict.values() if torch.is_tensor(v) and v.is_floating_point()}
    if len(dtypes) != 1:
        return None
    (dtype,) = dtypes
    return dtype if dtype in _FLOATING else None


def _check_buildable(cls: type[RecurrentModel], saved: Mapping[str, Any], file: Path) -> None:
    """Check the config's values, then its shapes against the weights, before building.

    Raises:
        rnnkit.CorruptCheckpointError: The config is missing or malformed.
        rnnkit.CheckpointMismatchError: The weights do not fit the model the config describes.
    """
    config = saved["config"]
    if config is None:
        raise corrupt(file, f"malformed (the {saved['class']} was saved without its config)")
    problems = check_config_values(cls.config_class, config)
    if problems:
        raise corrupt(file, f"malformed (its model config: {'; '.join(problems)})")
    diffs = count_problems(config, saved["state_dict"])
    if not diffs:
        try:
            meta = build_on_meta(cls, config)
        except CheckpointError as exc:
            what = f"malformed (its config cannot build a {cls.__name__}: {exc})"
            raise corrupt(file, what) from exc
        diffs = _shape_diffs(saved["state_dict"], meta.state_dict())
    if diffs:
        shown = ", ".join(diffs[:8]) + (f", and {len(diffs) - 8} more" if len(diffs) > 8 else "")
        fields = ", ".join(f"{key}={value!r}" for key, value in config.items() if key != "model")
        raise CheckpointMismatchError(
            f"Expected the weights in {str(file)!r} to fit the {cls.__name__} its config "
            f"describes ({fields}), but they differ: {shown}. Nothing was built. Hint: the "
            f"config or the weights were altered after saving; use an earlier checkpoint."
        )
