"""Metrics as pure tensor functions, and an accumulator that sums them across batches.

Every metric is a mean over elements, so it splits into a ``(sum, count)`` pair: summing the
pairs over batches (and over ranks, with one all-reduce) and dividing once gives exactly the
metric over the whole data set. The functions return 0-dim tensors on the inputs' device and
never call ``.item()``, so they cause no host synchronisation.

Metric names understood by :func:`get_metric`: ``"accuracy"``, ``"top5_accuracy"`` (any
``"top{k}_accuracy"``), ``"top_k"`` (top-5), ``"mse"`` and ``"mae"``.

This layer may import only ``rnnkit.errors`` (and torch).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, Protocol

import torch
from torch import Tensor

from rnnkit._validate import fmt_shape
from rnnkit.errors import ShapeError
from rnnkit.metrics._parts import (
    PartsFn,
    accuracy_parts,
    mae_parts,
    mse_parts,
    parts_mean,
    top_k_parts,
)

__all__ = [
    "METRIC_NAMES",
    "Metric",
    "MetricAccumulator",
    "accuracy",
    "get_metric",
    "mae",
    "mse",
    "resolve_mode",
    "rollout_error",
    "top_k_accuracy",
]

METRIC_NAMES: tuple[str, ...] = ("accuracy", "top5_accuracy", "top_k", "mse", "mae")
"""The metric names :func:`get_metric` resolves (plus any ``"top{k}_accuracy"``)."""


def accuracy(logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """Fraction of predictions whose arg-max class equals the target.

    Args:
        logits: Class scores (logits or probabilities).
        targets: Integer class indices.
        mask: Optional; ``True`` where a target counts (per-step classification of padded
            batches).

    Returns:
        A 0-dim float tensor in [0, 1] on ``logits``' device (no host synchronisation).

    Raises:
        ShapeError: If ``logits`` is not ``targets``' shape plus a class dimension.
        TypeError: If ``targets`` is not an integer tensor.

    Shapes:
        - logits: ``(N, C)``, or ``(N, L, C)`` per step
        - targets: ``(N,)``, or ``(N, L)``
        - mask: ``targets``' shape
        - output: ``()``
    """
    return parts_mean(accuracy_parts(logits, targets, mask))


def top_k_accuracy(
    logits: Tensor, targets: Tensor, k: int = 5, mask: Tensor | None = None
) -> Tensor:
    """Fraction of targets among the ``k`` highest-scored classes.

    Args:
        logits: Class scores.
        targets: Integer class indices.
        k: How many of the best classes count as a hit; 1 gives :func:`accuracy`.
        mask: Optional; ``True`` where a target counts.

    Returns:
        A 0-dim float tensor in [0, 1] on ``logits``' device.

    Raises:
        ShapeError: If the shapes do not match (see :func:`accuracy`).
        ValueError: If ``k`` is not between 1 and C.

    Shapes:
        - logits: ``(N, C)``, or ``(N, L, C)``
        - targets: ``(N,)``, or ``(N, L)``
        - output: ``()``
    """
    return parts_mean(top_k_parts(logits, targets, mask, k=k))


def mse(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error over the valid elements.

    Without a mask this equals ``torch.nn.functional.mse_loss``; with one, it equals the
    MSE over the unpadded pieces of every sequence concatenated.

    Args:
        pred: Predictions.
        target: True values, the same shape as ``pred``.
        mask: Optional; ``True`` at the valid steps of each sequence. Its shape is the leading
            dimensions of ``pred``; every element of a valid step counts. For a padded batch,
            :func:`rnnkit.data.valid_mask` builds it from ``lengths``.

    Returns:
        A 0-dim float tensor (``NaN`` when the mask selects nothing).

    Raises:
        ShapeError: If ``target`` or ``mask`` does not match ``pred``.

    Shapes:
        - pred, target: ``(N, L, H_y)`` (any shape)
        - mask: ``(N, L)``
        - output: ``()``
    """
    return parts_mean(mse_parts(pred, target, mask))


def mae(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean absolute error over the valid elements (see :func:`mse` for the mask).

    Args:
        pred: Predictions.
        target: True values, the same shape as ``pred``.
        mask: Optional; ``True`` at the valid steps of each sequence.

    Returns:
        A 0-dim float tensor.

    Raises:
        ShapeError: If ``target`` or ``mask`` does not match ``pred``.

    Shapes:
        - pred, target: ``(N, L, H_y)`` (any shape)
        - mask: ``(N, L)``
        - output: ``()``
    """
    return parts_mean(mae_parts(pred, target, mask))


@dataclass(frozen=True)
class Metric:
    """A named metric: callable like the functions above, and split into ``(sum, count)``.

    Args:
        name: The name it was resolved from.
        parts: ``parts(pred, target, mask)`` returns the 0-dim ``(sum, count)`` tensors whose
            ratio is the metric.
        target_kind: ``"class"`` (class indices, for classifiers) or ``"step"`` (per-step
            values, for regressors).
        higher_is_better: Whether larger values are better (``mode="max"`` for monitoring).
        min_classes: The fewest classes C the metric is defined for (``k`` for a top-k
            accuracy). A model with fewer ``num_classes`` is refused before training starts.
    """

    name: str
    parts: PartsFn
    target_kind: Literal["class", "step"]
    higher_is_better: bool
    min_classes: int = 1

    def __call__(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """The metric's value, ``sum / count`` of :attr:`parts`."""
        return parts_mean(self.parts(pred, target, mask))


_REGISTRY: dict[str, Metric] = {
    "accuracy": Metric("accuracy", accuracy_parts, "class", True),
    "top_k": Metric("top_k", partial(top_k_parts, k=5), "class", True, min_classes=5),
    "mse": Metric("mse", mse_parts, "step", False),
    "mae": Metric("mae", mae_parts, "step", False),
}
_TOP_K = re.compile(r"top(\d+)_accuracy")


def get_metric(name: str) -> Metric:
    """Resolve a metric name to a :class:`Metric`.

    Args:
        name: One of :data:`METRIC_NAMES`, or ``"top{k}_accuracy"`` for any ``k >= 1``.

    Returns:
        The metric, callable as ``metric(pred, target, mask=None)``.

    Raises:
        ValueError: If the name is unknown.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    match = _TOP_K.fullmatch(name)
    if match is not None and int(match.group(1)) >= 1:
        k = int(match.group(1))
        return Metric(name, partial(top_k_parts, k=k), "class", True, min_classes=k)
    raise ValueError(
        f"Expected a metric name in {list(METRIC_NAMES)} or 'top{{k}}_accuracy', but got "
        f"{name!r}. Hint: accuracy metrics suit classifiers, 'mse'/'mae' regressors."
    )


def resolve_mode(
    monitor: str | None,
    mode: Literal["min", "max", "auto"],
    metrics: Iterable[Metric] = (),
) -> Literal["min", "max"]:
    """The direction in which ``monitor`` improves: ``mode``, or for ``"auto"`` its guess.

    ``"auto"`` gives ``"max"`` for a metric known to be higher-is-better and ``"min"`` for
    anything else (losses and errors). Known are ``metrics`` (e.g. the fit's own
    :class:`Metric` objects, against which the callbacks check their mode when a fit starts)
    and rnnkit's named
    metrics (accuracies, such as ``"val_accuracy"`` or ``"top5_accuracy"``), with or without
    the ``val_`` prefix. Watching an accuracy with ``"min"`` would keep the worst epoch
    without a word, the commonest slip with these callbacks.

    Args:
        monitor: The monitored key of the epoch logs, or ``None``.
        mode: ``"min"``, ``"max"`` or ``"auto"``.
        metrics: Metrics that take precedence over the named ones, matched by name.

    Returns:
        ``"min"`` or ``"max"``.

    Raises:
        ValueError: If ``mode`` is not ``"min"``, ``"max"`` or ``"auto"``.
    """
    if mode not in ("min", "max", "auto"):
        raise ValueError(
            f"Expected `mode` to be 'min', 'max' or 'auto', but got {mode!r}. Hint: 'min' for "
            "losses, 'max' for accuracy, 'auto' to choose from `monitor`."
        )
    if mode != "auto":
        return mode
    name = (monitor or "").removeprefix("val_")
    known = {metric.name: metric for metric in metrics}
    try:
        metric = known[name] if name in known else get_metric(name)
    except ValueError:
        return "min"
    return "max" if metric.higher_is_better else "min"


def _accumulator_dtype(device: torch.device) -> torch.dtype:
    """float64 for exact long sums, except on MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


class MetricAccumulator:
    """Sums ``(sum, count)`` pairs per metric name over batches, on the data's device.

    Updates only launch tensor additions (no ``.item()``, no host synchronisation);
    :meth:`compute` synchronises once. The sums and counts are exposed (:attr:`sums`,
    :attr:`counts`, :meth:`pack`) so that a distributed run can add them across ranks with one
    all-reduce (:meth:`all_reduce`) and get exactly the single-process means.

    Args:
        names: Metric names to create up front, fixing their order (all ranks must hold the same
            names in the same order before an all-reduce).
        device: Device of every sum; defaults to that of the first tensor added (sums of
            plain numbers added before it move there; CPU while only numbers are added). Pass
            it in distributed runs so that ranks without updates agree.

    Example:
        >>> acc = MetricAccumulator()
        >>> acc.update_metric("accuracy", torch.tensor([[2.0, 1.0]]), torch.tensor([0]))
        >>> acc.update("loss", torch.tensor(0.5), weight=1)
        >>> acc.compute()
        {'accuracy': 1.0, 'loss': 0.5}
    """

    def __init__(
        self, names: Iterable[str] = (), *, device: torch.device | str | None = None
    ) -> None:
        self.device = torch.device(device) if device is not None else None
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, Tensor] = {}
        self._first_names = tuple(names)
        for name in self._first_names:
            self._slot(name)

    def _slot(self, name: str) -> None:
        if name not in self._sums:
            dev = self.device or torch.device("cpu")
            zero = torch.zeros((), dtype=_accumulator_dtype(dev), device=dev)
            self._sums[name], self._counts[name] = zero, zero.clone()

    def _adopt_device(self, device: torch.device) -> None:
        """Fix the device at the first tensor; sums of plain numbers made before move to it."""
        if self.device is not None:
            return
        self.device = device
        dtype = _accumulator_dtype(device)
        for store in (self._sums, self._counts):
            for name, value in store.items():
                store[name] = value.to(device, dtype)

    def add(self, name: str, total: Tensor | float, count: Tensor | float) -> None:
        """Add a precomputed ``(sum, count)`` pair to metric ``name``.

        Shapes:
            - total, count: ``()``
        """
        ref = total if isinstance(total, Tensor) else count
        if isinstance(ref, Tensor):
            self._adopt_device(ref.device)
        self._slot(name)
        for store, value in ((self._sums, total), (self._counts, count)):
            current = store[name]
            if isinstance(value, Tensor):
                value = value.detach().to(current.device, current.dtype)
            store[name] = current + value

    def update(self, name: str, value: Tensor | float, weight: Tensor | float = 1.0) -> None:
        """Add a batch mean ``value`` with ``weight`` (e.g. the batch's sample count).

        Shapes:
            - value, weight: ``()``
        """
        self.add(name, value * weight, weight)

    def update_metric(
        self, name: str, pred: Tensor, target: Tensor, mask: Tensor | None = None
    ) -> None:
        """Compute metric ``name`` (see :func:`get_metric`) on a batch and add its parts.

        Shapes:
            - pred, target, mask: as the metric's function documents.
        """
        total, count = get_metric(name).parts(pred.detach(), target, mask)
        self.add(name, total, count)

    @property
    def names(self) -> list[str]:
        """The accumulated metric names, in the order they first appeared."""
        return list(self._sums)

    @property
    def sums(self) -> dict[str, Tensor]:
        """The 0-dim sum tensor per metric (a new dict; the tensors are the live ones)."""
        return dict(self._sums)

    @property
    def counts(self) -> dict[str, Tensor]:
        """The 0-dim count tensor per metric."""
        return dict(self._counts)

    def pack(self) -> Tensor:
        """All sums and counts in one tensor, for a single all-reduce.

        Shapes:
            - output: ``(2, M)``: row 0 the sums, row 1 the counts, columns in :attr:`names`
              order.
        """
        if not self._sums:
            device = self.device or torch.device("cpu")
            return torch.zeros(2, 0, dtype=_accumulator_dtype(device), device=device)
        return torch.stack([torch.stack(list(s.values())) for s in (self._sums, self._counts)])

    def load_packed(self, packed: Tensor) -> None:
        """Replace the sums and counts by a tensor laid out as :meth:`pack` returns it.

        Raises:
            ShapeError: If ``packed`` is not ``(2, M)`` with M the number of names.

        Shapes:
            - packed: ``(2, M)``
        """
        if tuple(packed.shape) != (2, len(self._sums)):
            raise ShapeError(
                f"Expected `packed` to have shape (2, M) = (2, {len(self._sums)}), but got "
                f"{fmt_shape(packed)}. Hint: every rank must accumulate the same metric names."
            )
        for i, name in enumerate(self._sums):
            self._sums[name], self._counts[name] = packed[0, i], packed[1, i]

    def all_reduce(self, group: Any = None) -> None:
        """Sum the pairs across the ranks of ``torch.distributed``; a no-op when not running."""
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()):
            return
        packed = self.pack().clone()
        dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=group)
        self.load_packed(packed)

    def compute_tensors(self) -> dict[str, Tensor]:
        """The mean per metric as 0-dim tensors (``NaN`` where the count is 0); no sync."""
        nan = torch.tensor(math.nan)
        return {
            name: torch.where(count > 0, self._sums[name] / count, nan.to(count))
            for name, count in self._counts.items()
        }

    def compute(self) -> dict[str, float]:
        """The mean per metric as Python floats, with one host synchronisation."""
        if not self._sums:
            return {}
        sums, counts = self.pack().tolist()
        pairs = zip(self._sums, sums, counts, strict=True)
        return {name: s / c if c else math.nan for name, s, c in pairs}

    def reset(self) -> None:
        """Forget all sums and counts; the ``names`` given when it was made stay, at zero.

        Names added by updates are forgotten, so every rank again holds the same names in the
        same order before its next all-reduce.
        """
        self._sums.clear()
        self._counts.clear()
        for name in self._first_names:
            self._slot(name)


class _Generator(Protocol):
    def generate(self, prime: Tensor, steps: int) -> tuple[Tensor, Any]: ...


def _check_rollout(x: Tensor, y: Tensor, horizon: int, prime_len: int) -> None:
    if x.dim() != 3 or y.dim() != 3 or x.shape[:2] != y.shape[:2]:
        raise ShapeError(
            f"Expected `x` (N, L, H_in) and `y` (N, L, H_y) with the same N and L, but got "
            f"{fmt_shape(x)} and {fmt_shape(y)}. Hint: y holds the next-step targets of x."
        )
    if not 1 <= prime_len <= x.shape[1] - horizon + 1 or horizon < 1:
        raise ValueError(
            f"Expected 1 <= horizon and 1 <= prime_len <= L - horizon + 1 = "
            f"{x.shape[1] - horizon + 1}, but got horizon = {horizon}, prime_len = {prime_len}. "
            "Hint: the continuation must fit in the L steps of `y`."
        )


def rollout_error(
    model: _Generator, x: Tensor, y: Tensor, horizon: int, *, prime_len: int | None = None
) -> Tensor:
    """Free-running MSE of a sequence regressor over ``horizon`` generated steps.

    The model reads the first ``prime_len`` steps of ``x`` (teacher-forced), then generates
    ``horizon`` steps feeding back its own predictions (``model.generate(prime, horizon)``).
    The first generated value is the output at the prime's last step, so the truth it is
    compared with is ``y[:, prime_len - 1 : prime_len - 1 + horizon]``. This measures what a
    teacher-forced loss hides: how far generation drifts from the true continuation.

    The model is switched to evaluation mode for the call and back afterwards; no autograd
    graph is kept. A model with ``batch_first=False`` gets the prime time-major.

    Args:
        model: A model with ``generate(prime, steps)``, e.g. a
            :class:`~rnnkit.Seq2SeqRegressor`.
        x: Input sequences.
        y: Next-step targets of ``x`` (``y[:, t]`` is the value that follows ``x[:, t]``).
        horizon: Number of generated steps to score.
        prime_len: Steps of ``x`` used as the prime; default ``L - horizon + 1`` (the
            longest prime whose continuation fits, 1 when ``horizon == L``).

    Returns:
        A 0-dim tensor: the mean squared error over the ``horizon`` steps.

    Raises:
        ShapeError: If ``x`` and ``y`` are not matching ``(N, L, ·)`` tensors.
        ValueError: If ``horizon`` or ``prime_len`` does not fit in L.

    Shapes:
        - x: ``(N, L, H_in)``
        - y: ``(N, L, H_y)``
        - output: ``()``
    """
    p = x.shape[1] - horizon + 1 if prime_len is None else prime_len
    _check_rollout(x, y, horizon, p)
    time_major = getattr(model, "batch_first", True) is False
    prime = x[:, :p].transpose(0, 1) if time_major else x[:, :p]
    was_training = bool(getattr(model, "training", False))
    _set_training(model, False)
    try:
        with torch.no_grad():
            generated, _ = model.generate(prime, horizon)
    finally:
        _set_training(model, was_training)
    generated = generated.transpose(0, 1) if time_major else generated
    return mse(generated, y[:, p - 1 : p - 1 + horizon])


def _set_training(model: object, mode: bool) -> None:
    if isinstance(model, torch.nn.Module):
        model.train(mode)
