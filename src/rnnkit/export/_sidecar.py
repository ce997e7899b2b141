"""The JSON file written beside an exported model (private)."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from rnnkit._version import __version__
from rnnkit.data import Standardizer, plain_label
from rnnkit.export._signature import ExportMode, TensorSignature
from rnnkit.models import RecurrentModel

__all__ = ["SIDECAR_FORMAT", "data_card", "sidecar", "sidecar_path", "write_with_sidecar"]

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
    head = getattr(model, "head", None)
    outputs = int(head.out_features) if head is not None else model.spec.output_size
    return {
        "classes": None if classes is None else [plain_label(c) for c in classes.tolist()],
        "input_scaler": _scaler(model.input_scaler, model.spec.input_size),
        "target_scaler": _scaler(model.target_scaler, outputs),
    }


def _scaler(scaler: Standardizer | None, features: int) -> dict[str, list[float]] | None:
    """``{"mean": [...], "std": [...]}``, one value per feature (``(s - mean) / std``)."""
    if scaler is None:
        return None
    mean, std = (v.double().reshape(-1) for v in (scaler.mean, scaler.std))
    if mean.numel() == 1:  # one statistic for every feature: written out per feature
        mean, std = mean.expand(features), std.expand(features)
    return {"mean": mean.tolist(), "std": std.tolist()}


def write_with_sidecar(path: str | Path, payload: bytes, content: dict[str, Any]) -> Path:
    """Write the exported file and its sidecar; return the file's path.

    The sidecar is serialised first and both files are written whole to temporary files (the
    permissions of the file they replace, or a new file's; through a symbolic link to its
    target, the sidecar still beside the path given) before either
    replaces its target, so a failure to build or write them leaves an earlier pair as it
    was. Only a failure between the two renames can leave the new file beside the old
    sidecar.
    """
    text = json.dumps(content, indent=2, ensure_ascii=False) + "\n"
    target, card = Path(os.path.realpath(path)), sidecar_path(Path(path).absolute())
    pairs = [(target, payload), (card, text.encode("utf-8"))]
    staged: list[tuple[Path, Path]] = []
    try:
        for final, data in pairs:
            staged.append((_staged(final, data), final))
        for temp, final in staged:
            os.replace(temp, final)
    finally:
        for temp, _ in staged:
            temp.unlink(missing_ok=True)
    return Path(path)


def _staged(final: Path, data: bytes) -> Path:
    """``data`` written and synced to a new temporary file beside ``final``."""
    temp = final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        if final.exists():
            os.chmod(temp, final.stat().st_mode & 0o7777)  # a re-export keeps the file's mode
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp
