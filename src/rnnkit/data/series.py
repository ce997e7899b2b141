"""Series to sequences: next-step pairs, sliding windows, and sine waves.

A series is ``(T,)`` (one univariate series), ``(T, F)`` (one series of F features) or
``(B, T, F)`` (B series). Next-step prediction is :func:`next_step`, for example on
:func:`sine_wave`: ``X = S[:-1]`` and ``Y = S[1:]``, so the model learns each next value.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from rnnkit._validate import check_int
from rnnkit.data._checks import as_tensor, check_finite, require_dims
from rnnkit.data.dataset import SequenceDataset

__all__ = ["WindowMode", "as_series_batch", "next_step", "sine_wave", "windows"]

WindowMode = Literal["many_to_many", "many_to_one"]
"""What :func:`windows` predicts: the window shifted ahead, or one value after it."""

_Range = float | tuple[float, float]


def as_series_batch(series: Tensor | Any, name: str = "series") -> Tensor:
    """A series as a batch of series: ``(T,)`` -> ``(1, T, 1)``, ``(T, F)`` -> ``(1, T, F)``.

    A 3-D input ``(B, T, F)`` is returned as it is. A batch of univariate series must therefore
    be ``(B, T, 1)``: a 2-D input is always one multivariate series.

    Args:
        series: A :class:`torch.Tensor` or :class:`numpy.ndarray` (shares its memory).
        name: The argument name used in error messages.

    Raises:
        rnnkit.errors.ShapeError: ``series`` has no axis or more than three.
        ValueError: ``series`` holds NaN or infinite values (the first index is named).

    Shapes:
        - ``series``: ``(T,)``, ``(T, F)`` or ``(B, T, F)``.
        - returns: ``(B, T, F)``.
    """
    s = as_tensor(series, name)
    require_dims(
        s,
        name,
        (1, 2, 3),
        "(T,), (T, F) or (B, T, F)",
        "a batch of univariate series is (B, T, 1): use `series.unsqueeze(-1)`.",
    )
    check_finite(s, name)
    if s.dim() == 1:
        return s.reshape(1, -1, 1)
    return s.unsqueeze(0) if s.dim() == 2 else s


def next_step(series: Tensor | Any) -> SequenceDataset:
    """Next-step prediction pairs: inputs ``X = S[:-1]``, targets ``Y = S[1:]``.

    For example ``next_step(sine_wave())`` holds inputs and targets of shape
    ``(1, 100, 1)``.

    Args:
        series: ``(T,)``, ``(T, F)`` or ``(B, T, F)``, see :func:`as_series_batch`.

    Returns:
        A :class:`~rnnkit.data.SequenceDataset` of B sequences with per-step targets.

    Raises:
        rnnkit.errors.ShapeError: ``series`` of the wrong dimensionality.
        ValueError: Fewer than 2 steps, or NaN or infinite values.

    Shapes:
        - ``series``: ``(T,)``, ``(T, F)`` or ``(B, T, F)``.
        - returns: ``x`` ``(B, T - 1, F)`` and ``y`` ``(B, T - 1, F)`` (B = 1 for one series).
    """
    s = as_series_batch(series)
    if s.shape[1] < 2:
        raise ValueError(
            f"Expected `series` to have at least 2 steps, but it has T = {s.shape[1]}. "
            "Hint: next-step pairs need one step of input and one of target."
        )
    return SequenceDataset(s[:, :-1], s[:, 1:])


def windows(
    series: Tensor | Any,
    length: int,
    horizon: int = 1,
    stride: int = 1,
    *,
    mode: WindowMode = "many_to_many",
) -> SequenceDataset:
    """Sliding windows over one or many series, for many-to-many or many-to-one training.

    A window starts at every ``stride``-th step ``s`` for which its target still fits in the
    series (``s + length + horizon <= T``). Its input is ``S[s : s + length]``; its target is

    - ``"many_to_many"``: the window shifted ``horizon`` steps ahead,
      ``S[s + horizon : s + horizon + length]``;
    - ``"many_to_one"``: the single value ``horizon`` steps after the window's last step,
      ``S[s + length - 1 + horizon]``, as a one-step target.

    Windows of B series are concatenated series by series (all windows of series 0 first).

    Args:
        series: ``(T,)``, ``(T, F)`` or ``(B, T, F)``, see :func:`as_series_batch`.
        length: L, the steps per window (at least 1).
        horizon: How many steps ahead the target lies (at least 1).
        stride: Steps between the starts of consecutive windows (at least 1).
        mode: ``"many_to_many"`` or ``"many_to_one"``.

    Returns:
        A :class:`~rnnkit.data.SequenceDataset` with per-step targets.

    Raises:
        rnnkit.errors.ShapeError: ``series`` of the wrong dimensionality.
        ValueError: ``length + horizon`` longer than the series, ``length``, ``horizon`` or
            ``stride`` below 1, an unknown ``mode``, or NaN or infinite values.
        TypeError: ``length``, ``horizon`` or ``stride`` is not an int.

    Shapes:
        - ``series``: ``(T,)``, ``(T, F)`` or ``(B, T, F)``.
        - returns: ``x`` ``(B·W, L, F)`` with ``W = (T - L - horizon) // stride + 1`` windows
          per series; ``y`` ``(B·W, L, F)`` (many-to-many) or ``(B·W, 1, F)`` (many-to-one).
    """
    if mode not in ("many_to_many", "many_to_one"):
        raise ValueError(
            f"Expected `mode` to be 'many_to_many' or 'many_to_one', but got {mode!r}."
        )
    s = as_series_batch(series)
    length = check_int("length", length, 1)
    horizon = check_int("horizon", horizon, 1)
    stride = check_int("stride", stride, 1)
    b, t, f = s.shape
    if length + horizon > t:
        raise ValueError(
            f"Expected `length` + `horizon` = {length} + {horizon} to fit in the series of "
            f"T = {t} steps, but it is longer. Hint: use a shorter window or horizon."
        )
    x = _unfold(s[:, : t - horizon], length, stride)
    if mode == "many_to_many":
        return SequenceDataset(x, _unfold(s[:, horizon:], length, stride))
    per_series = x.shape[0] // b
    y = s[:, length - 1 + horizon :: stride][:, :per_series]
    return SequenceDataset(x, y.reshape(b * per_series, 1, f))


def _unfold(s: Tensor, length: int, stride: int) -> Tensor:
    """Windows of ``(B, T, F)`` as ``(B·W, length, F)``."""
    f = s.shape[2]
    w = s.unfold(1, length, stride)  # (B, W, F, length)
    return w.permute(0, 1, 3, 2).reshape(-1, length, f)


def sine_wave(
    num_waves: int | None = None,
    steps: int = 101,
    start: float = 0.0,
    stop: float = 10.0,
    *,
    amplitude: _Range = 1.0,
    frequency: _Range = 1.0,
    phase: _Range = 0.0,
    noise: float = 0.0,
    seed: int = 0,
) -> Tensor:
    """Sine waves ``amplitude · sin(frequency · t + phase) + noise``, ``t = linspace(start, stop)``.

    With the defaults this is ``sin(linspace(0, 10, 101))``, computed in ``float64`` with NumPy
    and cast to ``float32``. Each of
    ``amplitude``, ``frequency`` and ``phase`` is one number, shared by every wave, or a
    ``(low, high)`` range from which each wave draws its own value uniformly; ``noise`` is the
    standard deviation of Gaussian noise added to every step. The draws (amplitudes,
    frequencies, phases, then noise) come from ``numpy.random.default_rng(seed)``, so a seed
    fixes the whole data set.

    Args:
        num_waves: ``None`` for one wave of shape ``(steps,)``; a count B for a batch of shape
            ``(B, steps, 1)``, ready for :func:`next_step` or :func:`windows`.
        steps: T, the number of points.
        start: The first time point.
        stop: The last time point.
        amplitude: One amplitude, or a ``(low, high)`` range to draw from.
        frequency: One angular frequency, or a range.
        phase: One phase in radians, or a range, e.g. ``(0, 2 * math.pi)``.
        noise: Standard deviation of the added Gaussian noise (0 for none).
        seed: Seed of the random draws.

    Returns:
        A ``float32`` tensor.

    Raises:
        ValueError: ``num_waves`` or ``steps`` below 1, a negative ``noise``, or a range whose
            low end exceeds its high end.
        TypeError: An argument of the wrong type.

    Shapes:
        - returns: ``(T,)`` when ``num_waves`` is ``None``, else ``(B, T, 1)``.
    """
    count = 1 if num_waves is None else check_int("num_waves", num_waves, 1)
    steps = check_int("steps", steps, 1)
    if not noise >= 0.0:
        raise ValueError(f"Expected `noise` to be a standard deviation >= 0, but got {noise}.")
    rng = np.random.default_rng(check_int("seed", seed, 0))
    amp, freq, ph = (_draw(v, n, count, rng) for v, n in _params(amplitude, frequency, phase))
    waves = amp * np.sin(freq * np.linspace(start, stop, steps) + ph)
    if noise > 0.0:
        waves = waves + noise * rng.standard_normal(waves.shape)
    out = torch.from_numpy(waves).float()
    return out[0] if num_waves is None else out.unsqueeze(-1)


def _params(amplitude: _Range, frequency: _Range, phase: _Range) -> list[tuple[_Range, str]]:
    return [(amplitude, "amplitude"), (frequency, "frequency"), (phase, "phase")]


def _draw(value: _Range, name: str, count: int, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    """``(count, 1)`` values: ``value`` repeated, or uniform draws from a ``(low, high)`` range."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return np.full((count, 1), float(value))
    if isinstance(value, (tuple, list)) and len(value) == 2:
        low, high = float(value[0]), float(value[1])
        if not low <= high:
            raise ValueError(f"Expected `{name}` = (low, high) with low <= high, but got {value}.")
        return rng.uniform(low, high, size=(count, 1))
    raise TypeError(f"Expected `{name}` to be a number or a (low, high) pair, but got {value!r}.")
