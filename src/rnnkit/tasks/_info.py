"""What a data set holds, read once before training: :class:`DataInfo`.

The Trainer reads a :class:`DataInfo` from the first batch (or the whole data set, when it can
index it) and hands it to the :class:`~rnnkit.tasks.Task`, which checks it against the model
before any step runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rnnkit.data import IGNORE_INDEX, Batch, valid_mask
from rnnkit.errors import ShapeError

__all__ = ["DataInfo", "info_from_batch", "unpadded_steps"]


@dataclass(frozen=True)
class DataInfo:
    """What a data source holds, read once before training to check it against the model.

    Attributes:
        input_size: H_in.
        seq_len: L of the first batch (of the whole data set for a dataset).
        target_kind: ``"class"`` (one integer label per sequence, ``(N,)``), ``"tag"``
            (one integer label per step, ``(N, L_y)``), ``"step"`` (per-step values,
            ``(N, L_y, H_y)``) or ``None`` (no targets).
        target_size: H_y for per-step values, else ``None``.
        target_len: L_y for per-step targets, else ``None``.
        num_classes: The largest integer label plus one (over the whole data set for a
            dataset, over the first batch otherwise), else ``None``.
        full_length: True when no sequence is padded (no lengths, or all lengths equal L).
    """

    input_size: int
    seq_len: int
    target_kind: str | None
    target_size: int | None
    target_len: int | None
    num_classes: int | None
    full_length: bool

    def layout(self) -> str:
        """The data's layout in words, for error messages."""
        if self.target_kind == "class":
            targets = "class targets (N,)"
        elif self.target_kind == "tag":
            targets = "per-step class labels (N, L)"
        elif self.target_kind == "step":
            targets = f"per-step targets (N, L, H_y) = (?, ?, {self.target_size})"
        else:
            targets = "no targets"
        return f"x (N, L, H_in) = (?, {self.seq_len}, {self.input_size}) with {targets}"


def _target_kind(y: Tensor | None) -> str | None:
    if y is None:
        return None
    if y.dim() == 1:
        return "class"
    return "tag" if y.dim() == 2 else "step"


def info_from_batch(batch: Batch, num_classes: int | None, name: str) -> DataInfo:
    """The :class:`DataInfo` of one batch (``num_classes``: known for the whole data, or None).

    Raises:
        rnnkit.errors.ShapeError: ``x`` is not ``(N, L, H_in)``, or the targets have none of
            the accepted layouts.
    """
    x, y, lengths = batch
    _check_batch_dims(x, y, name)
    kind = _target_kind(y)
    full = lengths is None or bool((lengths == x.shape[1]).all())
    labels = kind in ("class", "tag")
    if labels and num_classes is None and y is not None:
        counted = y if kind == "class" else y[unpadded_steps(y, lengths) & (y != IGNORE_INDEX)]
        num_classes = int(counted.max()) + 1 if counted.numel() > 0 else None
    size = int(y.shape[2]) if kind == "step" and y is not None else None
    steps = int(y.shape[1]) if kind in ("step", "tag") and y is not None else None
    return DataInfo(int(x.shape[-1]), int(x.shape[1]), kind, size, steps, num_classes, full)


def unpadded_steps(tags: Tensor, lengths: Tensor | None) -> Tensor:
    """Where per-step labels ``(N, L)`` lie within their sequence's length (all, unpadded)."""
    if lengths is None:
        return torch.ones(tags.shape, dtype=torch.bool, device=tags.device)
    return valid_mask(lengths, tags.shape[1], device=tags.device)


def _check_batch_dims(x: Tensor, y: Tensor | None, name: str) -> None:
    if x.dim() != 3:
        hint = (
            "add a feature axis with x.unsqueeze(-1)"
            if x.dim() == 2
            else ("images (N, 1, H, W) need x.squeeze(1), or rnnkit.data.image_sequences(...)")
        )
        raise ShapeError(
            f"Expected the batches of `{name}` to have x of shape (N, L, H_in), but got "
            f"{tuple(x.shape)}. Hint: {hint}."
        )
    if y is None or y.dim() in (1, 3):
        return
    if y.dim() == 2 and not (y.is_floating_point() or y.is_complex()):
        return  # integer labels per step
    raise ShapeError(
        f"Expected the targets of `{name}` to have shape (N,) (class indices), (N, L) (integer "
        f"class labels per step) or (N, L, H_y) (per-step values), but got {tuple(y.shape)} "
        f"({y.dtype}). Hint: add a feature axis to per-step values with y.unsqueeze(-1); "
        "per-step class labels must be integers (y.long())."
    )
