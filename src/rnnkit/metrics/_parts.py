"""The ``(sum, count)`` parts behind :mod:`rnnkit.metrics`, with their argument checks.

Every metric is a mean over elements; these functions return its sum and the number of
elements summed (over the positions a mask keeps), as 0-dim tensors on the inputs' device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rnnkit._validate import fmt_shape
from rnnkit.errors import ShapeError

Parts = tuple[Tensor, Tensor]
"""A metric's ``(sum, count)``, two 0-dim tensors."""

PartsFn = Callable[[Tensor, Tensor, "Tensor | None"], Parts]
"""``(prediction, target, mask) -> (sum, count)``."""


def upcast(t: Tensor) -> Tensor:
    """``t`` as a floating tensor of at least float32 precision (bf16/fp16 sums drift)."""
    if t.is_floating_point() and t.dtype != torch.float16 and t.dtype != torch.bfloat16:
        return t
    return t.float()


def count_tensor(n: int, like: Tensor) -> Tensor:
    """A 0-dim count tensor on ``like``'s device, made without a host-to-device copy."""
    return torch.full((), float(n), dtype=like.dtype, device=like.device)


def check_mask(mask: Tensor, ref: Tensor, ref_name: str) -> None:
    if tuple(mask.shape) != tuple(ref.shape[: mask.dim()]) or mask.dim() == 0:
        layout = "(N,)" if ref.dim() == 1 else "(N, L)"
        raise ShapeError(
            f"Expected `mask` to have shape {layout} = {fmt_shape(ref.shape[:2])}, the leading "
            f"dimensions of `{ref_name}` {fmt_shape(ref)}, but got {fmt_shape(mask)}. Hint: the "
            "mask marks the valid (unpadded) steps: `rnnkit.data.valid_mask(lengths, L)`."
        )


def masked_sum(values: Tensor, mask: Tensor | None) -> Parts:
    """Sum of ``values`` and the number of summed elements, over positions where ``mask``."""
    if mask is None:
        return values.sum(), count_tensor(values.numel(), values)
    keep = mask.to(torch.bool).reshape(*mask.shape, *([1] * (values.dim() - mask.dim())))
    keep = keep.expand_as(values)
    total = torch.where(keep, values, torch.zeros((), dtype=values.dtype, device=values.device))
    return total.sum(), keep.sum().to(values.dtype)


def check_class_shapes(logits: Tensor, targets: Tensor) -> None:
    if logits.dim() < 1 or tuple(logits.shape[:-1]) != tuple(targets.shape):
        expected = "(" + ", ".join([*map(str, targets.shape), "?"]) + ")"
        scores, labels = ("(N, L, C)", "(N, L)") if targets.dim() == 2 else ("(N, C)", "(N,)")
        raise ShapeError(
            f"Expected `logits` to have shape {scores} = {expected}, one row of class scores per "
            f"target in `targets` {fmt_shape(targets)}, but got {fmt_shape(logits)}. Hint: pass "
            f"the raw model output {scores} and integer class indices {labels}, not one-hot "
            "targets."
        )
    if logits.shape[-1] < 2:
        raise ValueError(
            f"Expected class scores for C >= 2 classes in `logits`, but got "
            f"{fmt_shape(logits)}. Hint: a single logit is a binary score; give the model two "
            "outputs (one per class), or pass metrics=[] to score it yourself."
        )
    if targets.is_floating_point() or targets.is_complex():
        raise TypeError(
            f"Expected `targets` to hold integer class indices, but got dtype {targets.dtype}. "
            "Hint: convert with `targets.long()`."
        )


def top_k_parts(logits: Tensor, targets: Tensor, mask: Tensor | None, *, k: int) -> Parts:
    check_class_shapes(logits, targets)
    if mask is not None:
        check_mask(mask, targets, "targets")
    if not 1 <= k <= logits.shape[-1]:
        raise ValueError(
            f"Expected `k` between 1 and the number of classes C = {logits.shape[-1]}, but got "
            f"k = {k}. Hint: top-{k} accuracy needs at least {k} classes."
        )
    if k == 1:
        hits = logits.argmax(dim=-1) == targets
    else:
        hits = (logits.topk(k, dim=-1).indices == targets.unsqueeze(-1)).any(dim=-1)
    return masked_sum(hits.to(torch.float32), mask)


def accuracy_parts(logits: Tensor, targets: Tensor, mask: Tensor | None) -> Parts:
    return top_k_parts(logits, targets, mask, k=1)


def error_parts(pred: Tensor, target: Tensor, mask: Tensor | None, *, power: int) -> Parts:
    if tuple(pred.shape) != tuple(target.shape):
        layout = "(N, L, H_y) = " if pred.dim() == 3 else ""
        hint = (
            "per-step targets need the trailing size dimension too, e.g. `y.unsqueeze(-1)` "
            "for a single series"
            if target.dim() == pred.dim() - 1
            else "`pred` and `target` must match element for element"
        )
        raise ShapeError(
            f"Expected `target` to have shape {layout}{fmt_shape(pred)}, the shape of `pred`, "
            f"but got {fmt_shape(target)}. Hint: {hint}."
        )
    if mask is not None:
        check_mask(mask, pred, "pred")
    diff = (upcast(pred) - upcast(target)).abs()
    return masked_sum(diff.square() if power == 2 else diff, mask)


def mse_parts(pred: Tensor, target: Tensor, mask: Tensor | None) -> Parts:
    return error_parts(pred, target, mask, power=2)


def mae_parts(pred: Tensor, target: Tensor, mask: Tensor | None) -> Parts:
    return error_parts(pred, target, mask, power=1)


def parts_mean(parts: Parts) -> Tensor:
    total, count = parts
    return total / count
