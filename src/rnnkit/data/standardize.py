"""`Standardizer`: per-feature standardisation that remembers its statistics and inverts them.

Fit it on the training series (or a training :class:`~rnnkit.data.SequenceDataset`, padding
excluded), train on standardised data, and map the model's predictions back to the original
units with :meth:`Standardizer.inverse_transform`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rnnkit.data._checks import as_tensor, check_finite, fmt_shape
from rnnkit.data.dataset import SequenceDataset
from rnnkit.data.masks import valid_mask
from rnnkit.errors import ShapeError

__all__ = ["Standardizer", "statistics_problem"]


class Standardizer:
    """Standardise each feature to mean 0 and standard deviation 1: ``(s - mean) / std``.

    The statistics are taken over every axis but the last (the feature axis F) of the series
    given to :meth:`fit`; a 1-D series ``(T,)`` is one feature. The standard deviation is the
    population one (``unbiased=False``); a constant feature gets ``std = 1`` so it maps to 0
    and back. Statistics are computed in ``float64`` and kept as ``float32``.

    Example:
        >>> from rnnkit.data import Standardizer, next_step, sine_wave
        >>> scaler = Standardizer()
        >>> data = next_step(scaler.fit_transform(3.0 + 2.0 * sine_wave()))
        >>> restored = scaler.inverse_transform(data.batch([0]).y)  # original units
    """

    def __init__(self) -> None:
        self._mean: Tensor | None = None
        self._std: Tensor | None = None

    @property
    def mean(self) -> Tensor:
        """The per-feature means, shape ``(F,)`` (``()`` after fitting a 1-D series)."""
        return self._fitted()[0]

    @property
    def std(self) -> Tensor:
        """The per-feature standard deviations, shape ``(F,)`` (``()`` for a 1-D series)."""
        return self._fitted()[1]

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`load_state_dict`) has set the statistics."""
        return self._mean is not None

    def fit(self, series: Tensor | SequenceDataset | Any) -> Standardizer:
        """Compute the per-feature mean and standard deviation of ``series``.

        Fit on training data only, then :meth:`apply` the same statistics to the validation
        and test sets, so that nothing about them leaks into training.

        Args:
            series: A :class:`torch.Tensor` or :class:`numpy.ndarray` with at least one
                element, or a :class:`~rnnkit.data.SequenceDataset`: its inputs as each batch
                sees them before normalisation (after ``scale``), over the valid steps only
                (padding beyond each sequence's length is left out).

        Returns:
            This standardizer, fitted.

        Raises:
            ValueError: ``series`` is empty or holds NaN or infinite values, or its mean or
                deviation is beyond ``float32``'s range, so that the standardizer never holds
                statistics its own :meth:`load_state_dict` would refuse. (A deviation that
                rounds to zero in ``float32`` marks a constant feature, whose deviation is
                taken as 1.)

        Shapes:
            - ``series``: ``(T,)`` or ``(..., F)``.
        """
        s = (
            _valid_steps(series)
            if isinstance(series, SequenceDataset)
            else as_tensor(series, "series")
        )
        if s.numel() == 0:
            raise ValueError(f"Expected a non-empty `series`, but got shape {fmt_shape(s)}.")
        check_finite(s, "series")
        flat = s.double().reshape(-1) if s.dim() <= 1 else s.double().reshape(-1, s.shape[-1])
        # a deviation that rounds to 0 in float32 marks a constant feature, like an exact 0
        std = flat.std(dim=0, unbiased=False).float()
        std = torch.where(std > 0, std, torch.ones_like(std))
        mean = flat.mean(dim=0).float()
        problem = statistics_problem(mean, std)
        if problem is not None:
            raise ValueError(
                f"Expected statistics of `series` that fit float32, but the fitted state dict "
                f"{problem}. Hint: rescale the data (e.g. into other units) before fitting."
            )
        self._mean, self._std = mean, std
        return self

    def transform(self, data: Tensor | Any) -> Tensor:
        """``(data - mean) / std``, in ``float32`` (or ``data``'s floating dtype).

        Raises:
            RuntimeError: The standardizer is not fitted.
            TypeError: ``data`` is a :class:`~rnnkit.data.SequenceDataset`; :meth:`apply`
                standardises a dataset.
            rnnkit.errors.ShapeError: ``data``'s last axis is not F.

        Shapes:
            - ``data``: ``(..., F)`` (any shape for a 1-D fit); returns the same shape.
        """
        t, mean, std = self._prepared(data)
        return (t - mean) / std

    def inverse_transform(self, data: Tensor | Any) -> Tensor:
        """``data * std + mean``: standardised values (e.g. predictions) in original units.

        Raises:
            RuntimeError: The standardizer is not fitted.
            TypeError: ``data`` is a :class:`~rnnkit.data.SequenceDataset`.
            rnnkit.errors.ShapeError: ``data``'s last axis is not F.

        Shapes:
            - ``data``: ``(..., F)`` (any shape for a 1-D fit); returns the same shape.
        """
        t, mean, std = self._prepared(data)
        return t * std + mean

    def fit_transform(self, series: Tensor | Any) -> Tensor:
        """:meth:`fit` on ``series``, then :meth:`transform` it.

        For a :class:`~rnnkit.data.SequenceDataset`, ``fit(train).apply(train)`` is the
        equivalent; passing one here raises :class:`TypeError` before anything is fitted.

        Shapes:
            - ``series``: ``(T,)`` or ``(..., F)``; returns the same shape.
        """
        _refuse_dataset(series, "series")
        return self.fit(series).transform(series)

    def apply(self, dataset: SequenceDataset) -> SequenceDataset:
        """``dataset`` with every batch standardised by these statistics.

        The stored data are shared, not copied: the dataset's
        :meth:`~rnnkit.data.SequenceDataset.with_normalization` does the work one batch at a
        time.

        Raises:
            RuntimeError: The standardizer is not fitted.
            ValueError: The dataset is already normalised.
            rnnkit.errors.ShapeError: The dataset has another number of features.

        Shapes:
            - ``dataset``: ``x`` ``(N, L, F)``.
        """
        mean, std = self._fitted()
        if dataset.mean is not None or dataset.std is not None:
            raise ValueError(
                "Expected a dataset without `mean`/`std`, but this one is already normalised. "
                "Hint: standardise the raw dataset once."
            )
        if mean.dim() == 1 and dataset.input_size != mean.shape[0]:
            raise _width_error("dataset", "(N, L, F) = (?, ?, {})", dataset.x, mean)
        return dataset.with_normalization(mean, std)

    def state_dict(self) -> dict[str, Tensor]:
        """The statistics, ``{"mean": ..., "std": ...}``, for saving with a checkpoint."""
        mean, std = self._fitted()
        return {"mean": mean.clone(), "std": std.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore statistics saved by :meth:`state_dict`.

        Raises:
            ValueError: ``state`` lacks ``"mean"`` or ``"std"``, or holds statistics that
                :func:`statistics_problem` refuses (NaN, ``std`` <= 0, mismatched shapes, ...);
                the standardizer is then left as it was.
        """
        missing = sorted({"mean", "std"} - set(state))
        if missing:
            raise ValueError(
                f"Expected a state dict with 'mean' and 'std', but it lacks {missing}."
            )
        problem = statistics_problem(state["mean"], state["std"])
        if problem:
            raise ValueError(f"Expected standardizer statistics, but the state dict {problem}.")
        self._mean, self._std = state["mean"].float().clone(), state["std"].float().clone()

    def __repr__(self) -> str:
        if self._mean is None or self._std is None:
            return "Standardizer(unfitted)"
        return f"Standardizer(mean={self._mean.tolist()}, std={self._std.tolist()})"

    def _fitted(self) -> tuple[Tensor, Tensor]:
        if self._mean is None or self._std is None:
            raise RuntimeError("This Standardizer is not fitted yet. Hint: call `fit(series)`.")
        return self._mean, self._std

    def _prepared(self, data: Tensor | Any) -> tuple[Tensor, Tensor, Tensor]:
        mean, std = self._fitted()
        _refuse_dataset(data, "data")
        t = as_tensor(data, "data")
        t = t if t.is_floating_point() else t.float()
        if mean.dim() == 1 and (t.dim() == 0 or t.shape[-1] != mean.shape[0]):
            raise _width_error("data", "(..., F) = (..., {})", t, mean)
        return t, mean.to(t.device, t.dtype), std.to(t.device, t.dtype)


def statistics_problem(mean: object, std: object) -> str | None:
    """What is wrong with a standardizer's ``mean`` and ``std``, or ``None`` if nothing is.

    Statistics a model can hold and a checkpoint can store are dense floating-point tensors
    with values (not on the meta device) of shape ``()`` or ``(F,)``, both of one shape, finite,
    with every ``std`` > 0. A model's ``input_scaler``/``target_scaler`` setter and the
    checkpoint reader both ask this function, so a model never holds statistics its own
    checkpoint would refuse.

    Args:
        mean: The ``"mean"`` of a :meth:`Standardizer.state_dict`.
        std: Its ``"std"``.

    Returns:
        ``None``, or the first problem found, naming the entry of the state dict, e.g.
        ``"['std'] holds a value <= 0"``.
    """
    for name, t in (("mean", mean), ("std", std)):
        problem = _tensor_problem(t)
        if problem:
            return f"[{name!r}] {problem}"
    assert isinstance(mean, Tensor)
    assert isinstance(std, Tensor)
    if mean.shape != std.shape:
        return f"has 'mean' of shape {tuple(mean.shape)} but 'std' of {tuple(std.shape)}"
    if not bool((std > 0).all()):
        return "['std'] holds a value <= 0"
    return None


def _tensor_problem(t: object) -> str | None:
    if not isinstance(t, Tensor):
        return f"is a {type(t).__name__}, not a floating-point tensor of shape () or (F,)"
    if t.layout != torch.strided or t.is_nested:
        kind = "nested" if t.is_nested else str(t.layout).removeprefix("torch.")
        return f"is a {kind} tensor, not a dense (strided) one"
    if t.device.type == "meta":
        return "is on the meta device, without values"
    if not t.is_floating_point() or t.dim() > 1:
        return "is not a floating-point tensor of shape () or (F,)"
    if not bool(torch.isfinite(t).all()):
        return "holds NaN or infinite values"
    return None


def _width_error(name: str, layout: str, got: Tensor, mean: Tensor) -> ShapeError:
    """The error for ``got`` whose feature width is not the fitted one (``layout`` has a {})."""
    features = mean.shape[0]
    return ShapeError(
        f"Expected `{name}` to have shape {layout.format(features)}, but got {fmt_shape(got)}. "
        f"Hint: the standardizer was fitted on {features} features."
    )


def _refuse_dataset(value: object, name: str) -> None:
    if isinstance(value, SequenceDataset):
        raise TypeError(
            f"Expected `{name}` to be a torch.Tensor or numpy.ndarray, but got a "
            "SequenceDataset. Hint: `scaler.apply(dataset)` standardises a dataset, batch by batch."
        )


def _valid_steps(dataset: SequenceDataset) -> Tensor:
    """The dataset's steps that are not padding, after ``scale``: ``(steps, F)``."""
    x = dataset.x.float() if dataset.scale is None else dataset.x.float() * dataset.scale
    if dataset.lengths is None:
        return x.reshape(-1, x.shape[-1])
    return x[valid_mask(dataset.lengths, dataset.seq_len, device=x.device)]
