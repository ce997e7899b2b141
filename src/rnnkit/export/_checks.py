"""What can be exported, checked before any work is done (private)."""

from __future__ import annotations

import torch

from rnnkit.export._signature import MODES
from rnnkit.models import RecurrentModel, Seq2SeqRegressor, SequenceClassifier, SequenceTagger

__all__ = ["check_exportable", "check_streamable"]


def check_exportable(model: object, mode: object, *, onnx: bool = False) -> RecurrentModel:
    """Return `model` if it can be exported in `mode`; raise otherwise.

    Raises:
        TypeError: `model` is not a :class:`~rnnkit.SequenceClassifier`,
            :class:`~rnnkit.Seq2SeqRegressor` or :class:`~rnnkit.SequenceTagger`.
        ValueError: `mode` is unknown, or the model has an option the target cannot express.
    """
    if not isinstance(model, SequenceClassifier | Seq2SeqRegressor | SequenceTagger):
        raise TypeError(
            "Expected `model` to be a SequenceClassifier, a Seq2SeqRegressor or a "
            f"SequenceTagger, but got {type(model).__name__}."
        )
    if mode not in MODES:
        raise ValueError(f"Expected `mode` to be one of {MODES}, but got {mode!r}.")
    if mode == "step":
        check_streamable(model)
    if onnx:
        _check_onnx(model)
    return model


def check_streamable(model: RecurrentModel) -> None:
    """Raise unless `model` can run step by step (see :meth:`rnnkit.models.RecurrentModel.step`).

    Raises:
        ValueError: The model is bidirectional, or a classifier reads out a mean or maximum.
    """
    model._check_step()


def _check_onnx(model: RecurrentModel) -> None:
    dtype = next(model.parameters()).dtype
    if dtype != torch.float32:
        raise ValueError(
            f"Expected a float32 model for ONNX export, but its parameters are {dtype}. "
            "Hint: export a copy converted with model.float()."
        )
    if model.spec.proj_size:
        raise ValueError(
            f"Expected proj_size = 0 for ONNX export, but got proj_size = "
            f"{model.spec.proj_size}. Hint: ONNX's LSTM operator has no projection; export it "
            "with rnnkit.export.to_torch_export instead."
        )
