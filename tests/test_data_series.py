"""next_step, windows, sine_wave and Standardizer against the tutorial and hand-written slicing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rnnkit import ShapeError
from rnnkit.data import (
    SequenceDataset,
    Standardizer,
    as_series_batch,
    next_step,
    sine_wave,
    windows,
)


def test_sine_wave_default_is_the_tutorials_data() -> None:
    expected = torch.from_numpy(np.sin(np.linspace(0, 10, 101))).float()
    wave = sine_wave()
    assert wave.shape == (101,)
    assert torch.equal(wave, expected)


def test_next_step_on_the_sine_wave_gives_the_tutorials_inputs_and_target() -> None:
    # the tutorial, verbatim: data (101, 1), inputs = data[:-1], target = data[1:]
    seq_len = 100
    data = np.sin(np.linspace(0, 10, seq_len + 1)).reshape(seq_len + 1, 1)
    inputs = torch.tensor(data[:-1]).float().view(1, seq_len, 1)
    target = torch.tensor(data[1:]).float().view(1, seq_len, 1)
    batch = next_step(sine_wave()).batch(torch.tensor([0]))
    assert torch.equal(batch.x, inputs)
    assert batch.y is not None
    assert torch.equal(batch.y, target)


@pytest.mark.parametrize("shape", [(7,), (7, 3), (4, 7, 3)])
def test_next_step_shifts_by_one_step_for_every_layout(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    series = torch.randn(shape)
    data = next_step(series)
    batched = series.reshape(1, 7, 1) if series.dim() == 1 else series.reshape(-1, 7, shape[-1])
    assert len(data) == batched.shape[0]
    assert torch.equal(data.x, batched[:, :-1])
    assert data.y is not None
    assert torch.equal(data.y, batched[:, 1:])
    assert data.target_kind == "step"


def _hand_windows(
    series: torch.Tensor, length: int, horizon: int, stride: int, mode: str
) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for s in series:  # (T, F) each
        for start in range(0, len(s) - length - horizon + 1, stride):
            xs.append(s[start : start + length])
            if mode == "many_to_many":
                ys.append(s[start + horizon : start + horizon + length])
            else:
                ys.append(s[start + length - 1 + horizon].unsqueeze(0))
    return torch.stack(xs), torch.stack(ys)


@pytest.mark.parametrize("mode", ["many_to_many", "many_to_one"])
@pytest.mark.parametrize(
    ("length", "horizon", "stride"), [(5, 1, 1), (5, 2, 3), (1, 4, 2), (18, 2, 1)]
)
def test_windows_match_hand_written_slicing(
    mode: str, length: int, horizon: int, stride: int
) -> None:
    torch.manual_seed(0)
    series = torch.randn(2, 20, 3)
    data = windows(series, length, horizon, stride, mode=mode)  # type: ignore[arg-type]
    x, y = _hand_windows(series, length, horizon, stride, mode)
    assert torch.equal(data.x, x)
    assert data.y is not None
    assert torch.equal(data.y, y)
    assert len(data) == 2 * ((20 - length - horizon) // stride + 1)


def test_windows_over_one_univariate_series() -> None:
    series = torch.arange(10.0)
    data = windows(series, 3, stride=2)
    assert data.x[:, :, 0].tolist() == [[0, 1, 2], [2, 3, 4], [4, 5, 6], [6, 7, 8]]
    assert data.y is not None
    assert data.y[:, :, 0].tolist() == [[1, 2, 3], [3, 4, 5], [5, 6, 7], [7, 8, 9]]
    last = windows(series, 3, horizon=2, mode="many_to_one")
    assert last.y is not None
    assert last.y.flatten().tolist() == [4, 5, 6, 7, 8, 9]


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (
            (10, 1),
            {},
            ValueError,
            r"`length` \+ `horizon` = 10 \+ 1 to fit in the series of T = 10",
        ),
        ((3, 1, 0), {}, ValueError, "`stride` >= 1"),
        ((0,), {}, ValueError, "`length` >= 1"),
        ((3, 0), {}, ValueError, "`horizon` >= 1"),
        ((2.5,), {}, TypeError, "`length` to be an int"),
        ((3,), {"mode": "one_to_many"}, ValueError, "`mode` to be"),
    ],
)
def test_windows_reject_bad_arguments(
    args: tuple[object, ...], kwargs: dict[str, object], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        windows(torch.arange(10.0), *args, **kwargs)  # type: ignore[arg-type]


def test_series_of_wrong_dimensionality_or_with_nan_are_rejected() -> None:
    with pytest.raises(
        ShapeError, match=r"\(T,\), \(T, F\) or \(B, T, F\), but got \(1, 2, 3, 4\)"
    ):
        next_step(torch.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match="at least 2 steps"):
        next_step(torch.zeros(1))
    series = torch.arange(10.0)
    series[6] = float("nan")
    with pytest.raises(ValueError, match=r"`series` to hold finite values.*at index 6\b"):
        windows(series, 3)


def test_as_series_batch_layouts() -> None:
    assert as_series_batch(torch.zeros(5)).shape == (1, 5, 1)
    assert as_series_batch(np.zeros((5, 2))).shape == (1, 5, 2)
    assert as_series_batch(torch.zeros(3, 5, 2)).shape == (3, 5, 2)


def test_many_sine_waves_are_seeded_and_shaped_for_next_step() -> None:
    waves = sine_wave(8, steps=50, phase=(0.0, 2 * math.pi), seed=1)
    assert waves.shape == (8, 50, 1)
    assert torch.equal(waves, sine_wave(8, steps=50, phase=(0.0, 2 * math.pi), seed=1))
    assert not torch.equal(waves, sine_wave(8, steps=50, phase=(0.0, 2 * math.pi), seed=2))
    assert len({round(float(w[0, 0]), 6) for w in waves}) == 8  # each wave its own phase
    assert next_step(waves).x.shape == (8, 49, 1)


def test_sine_wave_ranges_bound_each_wave() -> None:
    t = np.linspace(0, 10, 400)
    waves = sine_wave(16, steps=400, amplitude=(2.0, 3.0), frequency=(1.0, 2.0), seed=0)
    peaks = waves.abs().amax(dim=(1, 2))
    assert bool((peaks <= 3.0).all())
    assert bool((peaks >= 2.0 * 0.99).all())  # over > 1.5 periods each wave reaches its amplitude
    # a wave is amplitude * sin(frequency * t): its zero crossings are pi / frequency apart
    first = waves[0, :, 0].numpy()
    crossings = t[1:][np.diff(np.sign(first)) != 0]
    frequency = math.pi / float(np.diff(crossings).mean())
    assert 1.0 - 0.05 <= frequency <= 2.0 + 0.05


def test_sine_wave_noise_has_the_requested_standard_deviation() -> None:
    clean = sine_wave(64, steps=200, phase=(0.0, 1.0), seed=5)
    noisy = sine_wave(64, steps=200, phase=(0.0, 1.0), noise=0.1, seed=5)  # same draws, + noise
    residual = (noisy - clean).double()
    assert abs(float(residual.std()) - 0.1) < 0.005
    assert abs(float(residual.mean())) < 0.005


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_waves": 0}, ValueError, "`num_waves` >= 1"),
        ({"steps": 0}, ValueError, "`steps` >= 1"),
        ({"noise": -0.1}, ValueError, "`noise`"),
        ({"phase": (1.0, 0.0)}, ValueError, "low <= high"),
        ({"frequency": "fast"}, TypeError, "`frequency` to be a number"),
    ],
)
def test_sine_wave_rejects_bad_arguments(
    kwargs: dict[str, object], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        sine_wave(**kwargs)  # type: ignore[arg-type]


def test_standardizer_uses_per_feature_population_statistics() -> None:
    torch.manual_seed(0)
    series = torch.randn(4, 30, 3) * torch.tensor([1.0, 5.0, 0.1]) + torch.tensor([2.0, -1.0, 7.0])
    scaler = Standardizer().fit(series)
    torch.testing.assert_close(scaler.mean, series.mean(dim=(0, 1)))
    torch.testing.assert_close(scaler.std, series.std(dim=(0, 1), unbiased=False))
    z = scaler.transform(series)
    torch.testing.assert_close(z.mean(dim=(0, 1)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 1), unbiased=False), torch.ones(3))
    torch.testing.assert_close(scaler.inverse_transform(z), series)


def test_standardizer_inverts_predictions_of_a_next_step_dataset() -> None:
    wave = 3.0 + 2.0 * sine_wave()
    scaler = Standardizer()
    data = next_step(scaler.fit_transform(wave))
    y = data.batch([0]).y
    assert y is not None
    torch.testing.assert_close(scaler.inverse_transform(y), wave[1:].reshape(1, 100, 1))
    assert scaler.mean.dim() == 0  # a 1-D series is one feature


def test_standardizer_constant_feature_state_dict_and_errors() -> None:
    series = torch.stack([torch.full((10,), 4.0), torch.arange(10.0)], dim=1)
    scaler = Standardizer().fit(series)
    assert scaler.std[0] == 1.0
    assert torch.equal(scaler.transform(series)[:, 0], torch.zeros(10))
    restored = Standardizer()
    restored.load_state_dict(scaler.state_dict())
    assert torch.equal(restored.transform(series), scaler.transform(series))
    with pytest.raises(ShapeError, match=r"\(\.\.\., F\) = \(\.\.\., 2\), but got \(10, 3\)"):
        scaler.transform(torch.zeros(10, 3))
    with pytest.raises(RuntimeError, match="not fitted"):
        Standardizer().transform(series)
    with pytest.raises(ValueError, match="non-empty"):
        Standardizer().fit(torch.zeros(0, 2))


def test_standardizer_points_a_dataset_at_apply() -> None:
    data = next_step(sine_wave())
    scaler = Standardizer().fit(data)
    hint = r"got a SequenceDataset\. Hint: `scaler\.apply\(dataset\)`"
    for method in (scaler.transform, scaler.inverse_transform):
        with pytest.raises(TypeError, match=hint):
            method(data)
    fresh = Standardizer()
    with pytest.raises(TypeError, match=hint):
        fresh.fit_transform(data)
    assert not fresh.is_fitted  # refused before fitting


def test_apply_to_a_dataset_of_another_width_names_the_fitted_features() -> None:
    scaler = Standardizer().fit(torch.randn(50, 2))
    wider = SequenceDataset(torch.zeros(4, 10, 3))
    message = r"`dataset` to have shape \(N, L, F\) = \(\?, \?, 2\), but got \(4, 10, 3\)\. Hint: "
    with pytest.raises(ShapeError, match=message + "the standardizer was fitted on 2 features"):
        scaler.apply(wider)
    applied = scaler.apply(SequenceDataset(torch.zeros(4, 10, 2)))
    assert applied.batch(torch.arange(4)).x.shape == (4, 10, 2)
