"""What can be exported, checked before any work is done (private)."""

from __future__ import annotations

import torch

from rnnkit.export._signature import check_model_and_mode
from rnnkit.models import RecurrentModel

__all__ = ["check_exportable", "check_streamable"]


def check_exportable(model: object, mode: object, *, onnx: bool = False) -> RecurrentModel:
    """Return `model` if it can be exported in `mode`; raise otherwise.

    Raises:
        TypeError: `model` is not a :class:`~rnnkit.SequenceClassifier`,
            :class:`~rnnkit.Seq2SeqRegressor` or :class:`~rnnkit.SequenceTagger`.
        ValueError: `mode` is unknown, or the model has an option the target cannot express.
    """
    check_model_and_mode(model, mode)
    assert isinstance(model, RecurrentModel)
    if mode == "step":
        check_streamable(model)
    if onnx:
        _check_onnx(model)
    return model


def check_streamable(model: RecurrentModel) -> None:
    """Raise unless `model` can run step by step (see :meth:`rnnkit.models.RecurrentModel.step`).

    Raises:
        TypeError: `model` is not one of rnnkit's models (e.g. its encoder alone).
        ValueError: The model is bidirectional, or a classifier reads out a mean or maximum.
    """
    check_model_and_mode(model, "step")
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
