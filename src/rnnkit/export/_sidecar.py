"""The JSON file written beside an exported model (private)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rnnkit._version import __version__
from rnnkit.data import Standardizer
from rnnkit.export._signature import ExportMode, TensorSignature
from rnnkit.models import RecurrentModel

__all__ = ["SIDECAR_FORMAT", "data_card", "sidecar", "sidecar_path", "write_sidecar"]

SIDECAR_FORMAT = "rnnkit-export"
"""The ``"format"`` key of every sidecar."""


def sidecar_path(path: str | Path) -> Path:
    """The sidecar of an exported file: its path with ``.json`` appended."""
    return Path(str(path) + ".json")


def sidecar(
    model: RecurrentModel,
    mode: ExportMode,
    inputs: list[TensorSignature],
    outputs: list[TensorSignature],
    **extra: Any,
) -> dict[str, Any]:
    """The sidecar's content: signature, model class and config, data units, rnnkit's version."""
    return {
        "format": SIDECAR_FORMAT,
        "version": 1,
        "rnnkit_version": __version__,
        "model": type(model).__name__,
        "config": model.config.to_dict(),
        "mode": mode,
        **extra,
        "data": data_card(model),
        "inputs": [tensor.to_dict() for tensor in inputs],
        "outputs": [tensor.to_dict() for tensor in outputs],
    }


def data_card(model: RecurrentModel) -> dict[str, Any]:
    """The model's labels and scalers as JSON values, ``None`` where it has none.

    The graph computes ``forward``, in the model's units: a deployment standardises raw inputs
    with ``input_scaler``, maps class ``k`` to ``classes[k]`` and a regressor's outputs back
    with ``target_scaler``, as ``predict_labels`` and ``forecast`` do in Python.
    """
    classes = model.classes
    return {
        "classes": None if classes is None else classes.tolist(),
        "input_scaler": _scaler(model.input_scaler),
        "target_scaler": _scaler(model.target_scaler),
    }


def _scaler(scaler: Standardizer | None) -> dict[str, list[float]] | None:
    """``{"mean": [...], "std": [...]}`` per feature (``(s - mean) / std``), or ``None``."""
    if scaler is None:
        return None
    mean, std = scaler.mean.double().reshape(-1), scaler.std.double().reshape(-1)
    return {"mean": mean.tolist(), "std": std.tolist()}


def write_sidecar(path: str | Path, content: dict[str, Any]) -> Path:
    """Write `content` beside the exported file at `path`; return the sidecar's path."""
    target = sidecar_path(path)
    target.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return target
