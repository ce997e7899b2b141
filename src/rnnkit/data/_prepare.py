"""How :class:`~rnnkit.data.SequenceDataset` checks and prepares what it is given.

Each ``_prepare_*`` function takes one constructor argument as the user passed it (a tensor,
an array, a number or ``None``), raises a clear error naming the argument when it does not
fit, and returns it in the form the dataset stores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rnnkit._validate import check_int
from rnnkit.data._checks import (
    as_tensor,
    check_finite,
    check_labels,
    fmt_shape,
    require_dims,
)
from rnnkit.data.masks import valid_mask
from rnnkit.errors import ShapeError

IGNORE_INDEX = -100
"""A per-step class target that marks a step to skip (cross_entropy's default ignore_index)."""

COLUMN_HINT = "a column of class indices (N, 1) becomes (N,) with `y.squeeze(1)`."
"""The hint for class labels given as a column ``(N, 1)`` where ``(N,)`` is expected."""

_Affine = float | Sequence[float] | Tensor


def _prepare_x(x: Any) -> Tensor:
    t = as_tensor(x, "x")
    require_dims(t, "x", (3,), "(N, L, H_in)", _x_dims_hint(tuple(t.shape)))
    if t.numel() == 0:
        raise ValueError(f"Expected a non-empty `x`, but got shape {fmt_shape(t)}.")
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"Expected `x` to hold real numbers, but got dtype {t.dtype}.")
    t = t.float() if t.dtype == torch.float64 else t
    check_finite(t, "x")
    return t


def _x_dims_hint(shape: tuple[int, ...]) -> str:
    """The likeliest fix for inputs that are not ``(N, L, H_in)``, judged by their axes."""
    if len(shape) == 4 and shape[1] == 1:
        return (
            "images (N, 1, H, W) read by rows become (N, H, W) with `x.squeeze(1)`; or use "
            "rnnkit.data.image_sequences(...)."
        )
    if len(shape) == 4:
        return "images (N, C, H, W) go through rnnkit.data.image_sequences(...)."
    return (
        "add a feature axis to univariate sequences with `x.unsqueeze(-1)`; images go through "
        "rnnkit.data.image_sequences(...)."
    )


def _prepare_classes(classes: Any, y: Any) -> np.ndarray[Any, Any] | None:
    if classes is None:
        return None
    if y is None or getattr(y, "ndim", 1) not in (1, 2):
        raise ValueError("Expected `classes` only with class targets `y` of shape (N,) or (N, L).")
    labels = np.asarray(classes)
    if labels.ndim != 1 or len(labels) == 0 or len(np.unique(labels)) != len(labels):
        raise ValueError(
            f"Expected `classes` to be a non-empty list of distinct labels, but got {classes!r}."
        )
    return labels


def _prepare_y(
    y: Any, n: int, seq_len: int, num_classes: int | None, lengths: Tensor | None = None
) -> tuple[Tensor | None, int | None]:
    if y is None:
        return None, None
    t = as_tensor(y, "y")
    if _looks_like_tags(t, seq_len):
        return _prepare_tags(t, n, num_classes, lengths)
    require_dims(
        t,
        "y",
        (1, 3),
        "(N,) for class indices or (N, L_y, H_y) for per-step targets",
        _y_dims_hint(t, seq_len),
    )
    if t.shape[0] != n:
        layout = "(N,)" if t.dim() == 1 else "(N, L_y, H_y)"
        raise ShapeError(
            f"Expected `y` to have shape {layout} with N = {n}, one target per sequence in `x`, "
            f"but got {fmt_shape(t)}. Hint: inputs and targets must have the same count."
        )
    if t.dim() == 3:
        t = t if t.dtype in (torch.float16, torch.bfloat16, torch.float32) else t.float()
        check_finite(t, "y")
        return t, None
    return _prepare_labels(t, num_classes)


def _y_dims_hint(t: Tensor, seq_len: int) -> str:
    """The likeliest fix for targets of the wrong dimensionality, judged from their values."""
    if t.dim() == 2 and t.shape[1] == 1:
        return COLUMN_HINT
    if t.dim() == 2 and t.numel() and _is_one_hot(t):
        return "one-hot rows (N, C) become class indices (N,) with `y.argmax(1)`."
    if t.dim() == 2 and _is_integer(t):
        return (
            f"per-step class indices (N, L) need a label for each of the L = {seq_len} steps "
            "of x (-100 at steps to skip)."
        )
    return (
        "add a feature axis to univariate per-step targets (N, L) with `y.unsqueeze(-1)`; "
        "per-step class labels (N, L) for a SequenceTagger must be integers (`y.long()`)."
    )


def _is_integer(t: Tensor) -> bool:
    return not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)


def _looks_like_tags(t: Tensor, seq_len: int) -> bool:
    """Integer ``(N, L)`` targets: a label per step of ``x`` (for a sequence tagger)."""
    return t.dim() == 2 and t.shape[1] == seq_len and _is_integer(t)


def _prepare_tags(
    t: Tensor, n: int, num_classes: int | None, lengths: Tensor | None
) -> tuple[Tensor, int]:
    if t.shape[0] != n:
        raise ShapeError(
            f"Expected `y` to have shape (N, L) with N = {n}, one label sequence per sequence "
            f"in `x`, but got {fmt_shape(t)}. Hint: inputs and targets must have the same count."
        )
    if num_classes is not None:
        num_classes = check_int("num_classes", num_classes, 1)
    t = t.long()
    if lengths is not None:  # padding holds no labels, whatever the user filled it with
        t = t.masked_fill(~valid_mask(lengths, t.shape[1], device=t.device), IGNORE_INDEX)
    labelled = t != IGNORE_INDEX
    _check_tag_labels(t, labelled, num_classes)
    largest = int(t[labelled].max()) if bool(labelled.any()) else 0
    return t, num_classes if num_classes is not None else largest + 1


def _check_tag_labels(t: Tensor, labelled: Tensor, num_classes: int | None) -> None:
    bad = labelled & ((t < 0) if num_classes is None else (t < 0) | (t >= num_classes))
    if not bool(bad.any()):
        return
    i, step = (int(v) for v in bad.nonzero()[0])
    upper = "num_classes" if num_classes is None else str(num_classes)
    raise ValueError(
        f"Expected the per-step class labels in `y` to lie in [0, {upper}) or be "
        f"{IGNORE_INDEX} (skipped), but got {int(t[i, step])} at index ({i}, {step}). Hint: "
        f"labels are class indices 0..C-1; mark steps without a label with {IGNORE_INDEX}."
    )


def _is_one_hot(t: Tensor) -> bool:
    ones = t == 1
    return bool(((t == 0) | ones).all()) and bool((ones.sum(dim=1) == 1).all())


def _prepare_labels(t: Tensor, num_classes: int | None) -> tuple[Tensor, int]:
    _require_integer_labels(t)
    if num_classes is not None:
        num_classes = check_int("num_classes", num_classes, 1)
    t = t.long()
    check_labels(t, "y", num_classes)
    return t, num_classes if num_classes is not None else int(t.max()) + 1


def _require_integer_labels(t: Tensor) -> None:
    """Refuse class targets ``(N,)`` that are not integers (``.long()`` would truncate them)."""
    if not _is_integer(t):
        raise TypeError(
            f"Expected the class targets `y` of shape (N,) to be integers, but got dtype "
            f"{t.dtype}. Hint: convert class labels with `y.long()`; for one regression target "
            "per sequence use shape (N, 1, H_y) with a Seq2SeqRegressor."
        )


def _prepare_lengths(lengths: Any, n: int, seq_len: int) -> Tensor | None:
    if lengths is None:
        return None
    t = as_tensor(lengths, "lengths")
    if t.dim() != 1 or t.shape[0] != n:
        raise ShapeError(
            f"Expected `lengths` to have shape (N,) = ({n},), but got {fmt_shape(t)}. "
            "Hint: one length per sequence in `x`."
        )
    if not _is_integer(t):
        raise TypeError(f"Expected `lengths` to hold integers, but got dtype {t.dtype}.")
    t = t.to(device="cpu", dtype=torch.int64)
    bad = (t < 1) | (t > seq_len)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"Expected every length to lie in [1, L] = [1, {seq_len}], but `lengths[{i}]` is "
            f"{int(t[i])}. Hint: drop empty sequences; L is `x.shape[1]`."
        )
    return t


def _prepare_scale(scale: float | None) -> float | None:
    if scale is None:
        return None
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"Expected `scale` to be a number, but got {type(scale).__name__}.")
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"Expected `scale` to be positive and finite, but got {scale}.")
    return float(scale)


def _prepare_affine(
    value: _Affine | None, name: str, size: int, device: torch.device, *, positive: bool
) -> Tensor | None:
    if value is None:
        return None
    t = torch.as_tensor(value, dtype=torch.float32).flatten()
    if t.numel() not in (1, size):
        raise ValueError(
            f"Expected `{name}` to be one number or H_in = {size} numbers, but got "
            f"{t.numel()}. Hint: per-channel image statistics go through "
            "image_sequences(normalize=...), which lays them out per feature."
        )
    if not bool(torch.isfinite(t).all()) or (positive and bool((t <= 0).any())):
        kind = "positive and finite" if positive else "finite"
        raise ValueError(f"Expected `{name}` to be {kind}, but got {t.tolist()}.")
    return t.expand(size).clone().to(device)
