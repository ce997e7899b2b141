"""The checks behind rnnkit.shapes' target validators (private).

See :func:`rnnkit.shapes.validate_class_targets`, :func:`rnnkit.shapes.validate_step_targets` and
:func:`rnnkit.shapes.validate_tag_targets`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.shapes._hints import fmt_shape, received, shape_error

__all__ = ["IGNORE_INDEX", "check_class_targets", "check_step_targets", "check_tag_targets"]

#: The dtypes :func:`torch.nn.functional.cross_entropy` takes as class indices.
_INDEX_DTYPES = (torch.int64, torch.uint8)

#: The per-step class target that marks a step to skip (cross_entropy's default ignore_index).
#: rnnkit.data keeps the same constant: the two layers may not import each other.
IGNORE_INDEX = -100


def check_class_targets(
    y: object, batch_size: int | None, num_classes: int | None, name: str
) -> None:
    """Check class indices: ``(N,)`` (``()`` unbatched), int64 or uint8, in ``0..C-1``."""
    expected = _class_expectation(batch_size, num_classes)
    if not isinstance(y, Tensor):
        raise shape_error(name, expected, received(y), f"convert it with torch.as_tensor({name}).")
    if y.dtype not in _INDEX_DTYPES:
        got = f"a {y.dtype} tensor of shape {fmt_shape(y.shape)}"
        raise shape_error(name, expected, got, _class_dtype_hint(y, name, batch_size))
    wanted = () if batch_size is None else (batch_size,)
    if tuple(y.shape) != wanted:
        hint = _class_shape_hint(y, name, batch_size)
        raise shape_error(name, expected, f"a tensor of shape {fmt_shape(y.shape)}", hint)
    if y.device.type != "meta" and y.numel():
        _check_class_values(y.reshape(-1), name, expected, num_classes)


def _class_expectation(batch_size: int | None, num_classes: int | None) -> str:
    shape = "shape () (unbatched)" if batch_size is None else f"shape (N,) = ({batch_size},)"
    values = "in 0..C-1" if num_classes is None else f"in 0..C-1 = 0..{num_classes - 1}"
    return f"be an int64 tensor of {shape} with class indices {values}"


def _class_dtype_hint(y: Tensor, name: str, batch_size: int | None) -> str:
    if y.is_floating_point() and y.dim() == 2 and y.shape[0] == batch_size:
        return (
            f"{name} looks like one-hot or probability rows (N, C); take the class indices "
            f"with {name}.argmax(dim=1)."
        )
    if y.is_floating_point():
        return f"class indices are integers; convert them with {name}.long()."
    return f"cross_entropy takes int64 class indices; convert them with {name}.long()."


def _class_shape_hint(y: Tensor, name: str, batch_size: int | None) -> str | None:
    if batch_size is None:
        return "an unbatched prediction (C,) takes a single class index, a 0-d tensor."
    if tuple(y.shape) == (batch_size, 1):
        return f"remove the trailing dimension with {name}.squeeze(1)."
    if y.dim() == 2 and y.shape[0] == batch_size:
        return (
            f"{name} looks like one-hot rows (N, C); take the class indices "
            f"with {name}.argmax(dim=1)."
        )
    if y.dim() == 1:
        return (
            f"{name} holds {y.shape[0]} labels for a batch of N = {batch_size} sequences; "
            f"keep each label with its sequence (one dataset, one sampler)."
        )
    return None


def _check_class_values(y: Tensor, name: str, expected: str, num_classes: int | None) -> None:
    upper = num_classes
    bad = (y < 0) if upper is None else (y < 0) | (y >= upper)
    where = bad.nonzero()
    if where.numel() == 0:
        return
    index = int(where[0, 0])
    value, low, high = int(y[index]), int(y.min()), int(y.max())
    got = f"{name}[{index}] = {value}" if y.dim() else f"{name} = {value}"
    if value < 0:
        hint = "class indices cannot be negative."
    elif low >= 1 and upper is not None and high == upper:
        hint = f"the labels seem to run 1..C; shift them with {name} - 1."
    else:
        hint = (
            f"the model has num_classes = {upper}; build it with num_classes = {high + 1} "
            f"to cover label {high}, or fix the labels."
        )
    raise shape_error(name, expected, got, hint)


def check_step_targets(
    y: object, batch_size: int | None, seq_len: int, size: int, name: str
) -> None:
    """Check per-step targets: real-valued, ``(N, L, H_y)`` (``(L, H_y)`` unbatched)."""
    wanted = (seq_len, size) if batch_size is None else (batch_size, seq_len, size)
    symbols = "(L, H_y)" if batch_size is None else "(N, L, H_y)"
    expected = f"be a real-valued tensor of shape {symbols} = {fmt_shape(wanted)}"
    if not isinstance(y, Tensor):
        raise shape_error(name, expected, received(y), f"convert it with torch.as_tensor({name}).")
    if y.is_complex():
        got = f"a {y.dtype} tensor of shape {fmt_shape(y.shape)}"
        hint = f"regression targets are real numbers; take {name}.real or {name}.abs()."
        raise shape_error(name, expected, got, hint)
    if tuple(y.shape) != wanted:
        got = f"a tensor of shape {fmt_shape(y.shape)}"
        raise shape_error(name, expected, got, _step_shape_hint(tuple(y.shape), wanted, name))


def _step_shape_hint(got: tuple[int, ...], wanted: tuple[int, ...], name: str) -> str | None:
    if got == wanted[:-1]:
        return (
            f"{name} lacks the feature dimension (mse_loss would broadcast it against the "
            f"predictions); add it with {name}.unsqueeze(-1)."
        )
    if len(wanted) == 3 and got == (wanted[1], wanted[0], wanted[2]):
        return (
            f"{name} is time first, (L, N, H_y); targets are batch first: "
            f"use {name}.transpose(0, 1)."
        )
    if len(got) == len(wanted) and abs(got[-2] - wanted[-2]) == 1 and got[-1] == wanted[-1]:
        return (
            f"{name} has {got[-2]} steps but x has L = {wanted[-2]}; for next-step prediction "
            f"cut both from one series s of L + 1 steps: x = s[:, :-1], y = s[:, 1:]."
        )
    if got[:-1] == wanted[:-1]:
        return f"{name} has H_y = {got[-1]} values per step but the model predicts {wanted[-1]}."
    return None


def check_tag_targets(
    y: object, batch_size: int | None, seq_len: int, num_classes: int | None, name: str
) -> None:
    """Check per-step class indices: int64 ``(N, L)`` (``(L,)`` unbatched), in ``0..C-1``.

    A step labelled :data:`IGNORE_INDEX` (-100) is allowed anywhere: the loss skips it.
    """
    wanted = (seq_len,) if batch_size is None else (batch_size, seq_len)
    expected = _tag_expectation(wanted, num_classes)
    if not isinstance(y, Tensor):
        raise shape_error(name, expected, received(y), f"convert it with torch.as_tensor({name}).")
    if y.dtype not in _INDEX_DTYPES:
        got = f"a {y.dtype} tensor of shape {fmt_shape(y.shape)}"
        raise shape_error(name, expected, got, _tag_dtype_hint(y, name, wanted))
    if tuple(y.shape) != wanted:
        got = f"a tensor of shape {fmt_shape(y.shape)}"
        raise shape_error(name, expected, got, _tag_shape_hint(tuple(y.shape), wanted, name))
    if y.device.type != "meta" and y.numel():
        _check_tag_values(y, name, expected, num_classes)


def _tag_expectation(wanted: tuple[int, ...], num_classes: int | None) -> str:
    symbols = "(L,)" if len(wanted) == 1 else "(N, L)"
    values = "in 0..C-1" if num_classes is None else f"in 0..C-1 = 0..{num_classes - 1}"
    return (
        f"be an int64 tensor of shape {symbols} = {fmt_shape(wanted)} with class indices "
        f"{values} (or {IGNORE_INDEX} at steps to skip)"
    )


def _tag_dtype_hint(y: Tensor, name: str, wanted: tuple[int, ...]) -> str:
    if y.is_floating_point() and tuple(y.shape[:-1]) == wanted:
        return (
            f"{name} looks like one-hot or probability rows per step (N, L, C); take the class "
            f"indices with {name}.argmax(dim=-1)."
        )
    if y.is_floating_point():
        return f"class indices are integers; convert them with {name}.long()."
    return f"cross_entropy takes int64 class indices; convert them with {name}.long()."


def _tag_shape_hint(got: tuple[int, ...], wanted: tuple[int, ...], name: str) -> str | None:
    if got == (*wanted, 1):
        return f"remove the trailing dimension with {name}.squeeze(-1)."
    if len(wanted) == 2 and got == (wanted[1], wanted[0]):
        return f"{name} is time first, (L, N); targets are batch first: use {name}.transpose(0, 1)."
    if len(wanted) == 2 and got == wanted[:1]:
        return (
            f"{name} holds one label per sequence; a SequenceTagger needs one per step (a "
            "SequenceClassifier takes one per sequence)."
        )
    if len(got) == len(wanted) and got[:-1] == wanted[:-1]:
        return (
            f"{name} has {got[-1]} steps but x has L = {wanted[-1]}; give a label for every "
            f"step, with {IGNORE_INDEX} at steps to skip."
        )
    return None


def _check_tag_values(y: Tensor, name: str, expected: str, num_classes: int | None) -> None:
    labelled = y != IGNORE_INDEX if y.dtype == torch.int64 else torch.ones_like(y, dtype=torch.bool)
    bad = labelled & ((y < 0) if num_classes is None else (y < 0) | (y >= num_classes))
    where = bad.nonzero()
    if where.numel() == 0:
        return
    index = tuple(int(i) for i in where[0])
    value = int(y[index])
    got = f"{name}[{', '.join(map(str, index))}] = {value}"
    if value < 0:
        hint = f"class indices cannot be negative; mark steps to skip with {IGNORE_INDEX}."
    else:
        high = int(y[labelled].max())
        hint = (
            f"the model has num_classes = {num_classes}; build it with num_classes = "
            f"{high + 1} to cover label {high}, or fix the labels."
        )
    raise shape_error(name, expected, got, hint)
