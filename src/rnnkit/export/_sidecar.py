"""The JSON file written beside an exported model (private)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rnnkit._version import __version__
from rnnkit.export._signature import ExportMode, TensorSignature
from rnnkit.models import RecurrentModel

__all__ = ["SIDECAR_FORMAT", "sidecar", "sidecar_path", "write_sidecar"]

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
    """The sidecar's content: signature, model class and config, rnnkit's version."""
    return {
        "format": SIDECAR_FORMAT,
        "version": 1,
        "rnnkit_version": __version__,
        "model": type(model).__name__,
        "config": model.config.to_dict(),
        "mode": mode,
        **extra,
        "inputs": [tensor.to_dict() for tensor in inputs],
        "outputs": [tensor.to_dict() for tensor in outputs],
    }


def write_sidecar(path: str | Path, content: dict[str, Any]) -> Path:
    """Write `content` beside the exported file at `path`; return the sidecar's path."""
    target = sidecar_path(path)
    target.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return target
