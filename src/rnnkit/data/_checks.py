"""Input checks shared by the data adapters (internal).

Every check raises an error that names the argument, says what was expected and what came, and
where a common mistake is recognisable, how to fix it.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rnnkit._validate import fmt_shape
from rnnkit.errors import ShapeError

__all__ = [
    "as_indices",
    "as_tensor",
    "check_finite",
    "check_index",
    "check_labels",
    "fmt_shape",
    "require_dims",
]


def as_tensor(value: Any, name: str) -> Tensor:
    """Return ``value`` (a tensor or an ndarray) as a CPU-or-device tensor, sharing memory.

    A tensor is detached from any autograd graph: data are constants to the model, and a
    tensor with ``requires_grad=True`` would tie every batch drawn from it to one graph.

    Raises:
        TypeError: ``value`` is neither a :class:`torch.Tensor` nor a :class:`numpy.ndarray`.
    """
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        if not value.flags.writeable or any(s < 0 for s in value.strides):
            value = np.array(value)  # torch cannot share read-only or reversed memory
        return torch.from_numpy(value)
    raise TypeError(
        f"Expected `{name}` to be a torch.Tensor or numpy.ndarray, but got "
        f"{type(value).__name__}. Hint: convert it with torch.as_tensor(...); a list of "
        "sequences of different lengths goes through rnnkit.data.pad(...)."
    )


def require_dims(t: Tensor, name: str, dims: tuple[int, ...], layout: str, hint: str) -> None:
    """Raise :class:`~rnnkit.errors.ShapeError` unless ``t.dim()`` is one of ``dims``."""
    if t.dim() not in dims:
        raise ShapeError(
            f"Expected `{name}` to have shape {layout}, but got {fmt_shape(t)} "
            f"({t.dim()} dimensions). Hint: {hint}"
        )


def check_finite(t: Tensor, name: str) -> None:
    """Raise ``ValueError`` naming the first NaN or infinite element of a floating tensor."""
    if not t.is_floating_point():
        return
    bad = ~torch.isfinite(t)
    if not bool(bad.any()):
        return
    first = tuple(int(i) for i in bad.nonzero()[0].tolist())
    count = int(bad.sum())
    index = first[0] if len(first) == 1 else first
    raise ValueError(
        f"Expected `{name}` to hold finite values, but it holds {count} NaN or infinite "
        f"value(s); the first is {t[first].item()} at index {index}. Hint: drop or impute "
        "the missing values before building the dataset."
    )


def check_labels(y: Tensor, name: str, num_classes: int | None) -> None:
    """Raise ``ValueError`` for a class label outside ``[0, num_classes)``, naming its index."""
    bad = y < 0 if num_classes is None else (y < 0) | (y >= num_classes)
    if not bool(bad.any()):
        return
    index = int(bad.nonzero()[0, 0])
    upper = "num_classes" if num_classes is None else str(num_classes)
    raise ValueError(
        f"Expected the class labels in `{name}` to lie in [0, {upper}), but got "
        f"{int(y[index])} at index {index}. Hint: labels are class indices 0..C-1; shift "
        "1-based labels with `y - 1`."
    )


def check_index(index: Any, n: int) -> int:
    """``index`` as an int in ``[0, n)``; negative ones count from the end, as in a list."""
    try:
        i = operator.index(index)
    except TypeError:
        raise TypeError(
            f"Expected `index` to be an int, but got {index!r}. Hint: data.batch(indices) or "
            "data.subset(indices) take many samples at once."
        ) from None
    if not -n <= i < n:
        raise IndexError(
            f"Expected `index` in [-{n}, {n}), the dataset's N = {n} samples, but got {i}. "
            "Hint: len(data) is the number of samples."
        )
    return i % n


def as_indices(indices: Tensor | Sequence[int], n: int) -> Tensor:
    """``indices`` as ``int64`` sample indices; a boolean mask of length ``n`` selects."""
    idx = indices if isinstance(indices, Tensor) else torch.as_tensor(indices)
    if idx.dtype != torch.bool:
        return _checked_indices(idx, n)
    if idx.dim() != 1 or idx.shape[0] != n:
        raise IndexError(
            f"Expected the boolean mask `indices` to have shape (N,) = ({n},), one flag per "
            f"sample, but got {fmt_shape(idx)}. Hint: a mask selects the samples where it is "
            "true and must be as long as the dataset; otherwise pass integer indices."
        )
    return idx.nonzero().flatten()  # .long() would read the flags as indices 0 and 1


def _checked_indices(idx: Tensor, n: int) -> Tensor:
    """Integer indices in ``[0, n)``; fractional ones are refused, not truncated.

    The range is checked for CPU indices only: on an accelerator it would synchronise every
    batch (the gather there fails on its own).
    """
    if idx.numel() == 0:
        return idx.reshape(-1).long()  # torch.as_tensor([]) is float32: no index, no kind
    if idx.is_floating_point() or idx.is_complex():
        raise TypeError(
            f"Expected `indices` to hold integers, but got dtype {idx.dtype}. Hint: sample "
            "indices come from torch.randperm(N) or torch.arange(N)."
        )
    if idx.dim() > 1:
        raise ShapeError(
            f"Expected `indices` to have shape (B,), but got {fmt_shape(idx)}. Hint: flatten "
            "them; a batch is one list of samples."
        )
    idx = idx.long()
    if idx.device.type != "cpu":
        return idx
    low, high = (int(v) for v in torch.aminmax(idx))
    if low < 0 or high >= n:
        first = int(((idx < 0) | (idx >= n)).nonzero()[0, 0])
        raise IndexError(
            f"Expected every index in [0, {n}), the dataset's N = {n} samples, but "
            f"`indices[{first}]` is {int(idx[first])}. Hint: draw indices with "
            "torch.randperm(N) or torch.arange(N) of this dataset."
        )
    return idx
