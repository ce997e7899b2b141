"""Trainer.lr_find: the range test's curve, its suggestion, and that it changes nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from rnnkit import SequenceClassifier, Trainer
from rnnkit.tasks import ClassificationTask
from rnnkit.training import LRFinderResult
from rnnkit.training._lr_find import steepest_index


def _linear_data() -> tuple[torch.Tensor, torch.Tensor]:
    """A noisy linearly separable problem: (512, 4, 3) inputs, two classes."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 4, 3, generator=g)
    w = torch.randn(12, generator=g)
    y = ((x.flatten(1) @ w + 0.5 * torch.randn(512, generator=g)) > 0).long()
    return x, y


def _linear_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 2))


def _trainer(optimizer: str, lr: float = 1e-3, epochs: int = 1) -> Trainer:
    return Trainer(
        max_epochs=epochs,
        batch_size=32,
        optimizer=optimizer,
        lr=lr,
        progress=False,
        seed=0,
        task=ClassificationTask(),
    )


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_suggestion_is_within_10x_of_the_best_rate_of_a_grid(optimizer: str) -> None:
    x, y = _linear_data()
    grid = [1e-3, 1e-2, 1e-1, 1.0, 10.0]
    final = {
        lr: _trainer(optimizer, lr, epochs=2).fit(_linear_model(), (x, y))[-1]["loss"]
        for lr in grid
    }
    best = min(final, key=lambda lr: final[lr])
    result = _trainer(optimizer).lr_find(
        _linear_model(), (x, y), min_lr=1e-5, max_lr=100.0, num_steps=50
    )
    assert best / 10 <= result.suggested_lr <= best * 10, (result.suggested_lr, final)


def test_rates_grow_geometrically_and_the_curve_is_smoothed() -> None:
    x, y = _linear_data()
    result = _trainer("sgd").lr_find(
        _linear_model(), (x, y), min_lr=1e-4, max_lr=1e-2, num_steps=20, smoothing=0.5
    )
    assert len(result.lrs) == 20
    assert not result.diverged
    assert result.lrs[0] == pytest.approx(1e-4)
    assert result.lrs[-1] == pytest.approx(1e-2)
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:], strict=False)]
    assert ratios == pytest.approx([100 ** (1 / 19)] * 19)
    # Bias-corrected EMA, computed by hand.
    average, expected = 0.0, []
    for k, loss in enumerate(result.losses):
        average = 0.5 * average + 0.5 * loss
        expected.append(average / (1 - 0.5 ** (k + 1)))
    assert result.smoothed_losses == pytest.approx(expected)
    assert result.smoothed_losses[0] == result.losses[0]


def test_stops_when_the_loss_diverges() -> None:
    x, y = _linear_data()
    result = _trainer("sgd").lr_find(
        _linear_model(), (x, y), min_lr=1e-2, max_lr=1e6, num_steps=100
    )
    assert result.diverged
    assert len(result.lrs) < 100
    assert result.suggested_lr < result.lrs[-1]


def test_leaves_model_optimizer_rng_and_run_state_untouched() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(48, 5, 3), torch.randint(0, 2, (48,))
    model = SequenceClassifier(3, 2, 8, dropout=0.3, num_layers=2)
    trainer = Trainer(max_epochs=1, batch_size=16, progress=False, seed=0)
    trainer.fit(model, (x, y))
    assert trainer.optimizer is not None
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    optim_state = trainer.optimizer.state_dict()
    optim_before = {
        k: {n: t.clone() for n, t in s.items()} for k, s in optim_state["state"].items()
    }
    state_before = trainer.state_dict()
    rng_before = torch.get_rng_state()
    was_training = model.training

    trainer.lr_find(model, (x, y), num_steps=8)

    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key
    for k, s in trainer.optimizer.state_dict()["state"].items():
        for n, t in s.items():
            assert torch.equal(t, optim_before[k][n])
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert model.training == was_training
    state_after = trainer.state_dict()
    for key in ("epoch", "position", "global_step", "skipped_batches", "should_stop"):
        assert state_after[key] == state_before[key], key
    assert state_after["history"] == state_before["history"]
    for name in ("torch", "shuffle", "teacher"):
        assert torch.equal(state_after["rng"][name], state_before["rng"][name]), name


def test_a_float64_model_gets_its_inputs_cast_as_fit_casts_them() -> None:
    x, y = _linear_data()
    model = SequenceClassifier(3, 2, 8).double()
    trainer = Trainer(max_epochs=1, batch_size=32, progress=False, seed=0)
    result = trainer.lr_find(model, (x, y), num_steps=5)
    assert len(result.lrs) == len(result.losses) == 5
    assert next(model.parameters()).dtype == torch.float64


def test_steepest_index_ignores_the_rise_after_the_minimum() -> None:
    lrs = [10.0**k for k in range(-6, 4)]
    smoothed = [1.0, 1.0, 0.99, 0.9, 0.5, 0.3, 0.25, 0.24, 2.0, 9.0]
    assert steepest_index(lrs, smoothed) == 4  # the 0.9 -> 0.3 drop is centred on 1e-2
    assert lrs[steepest_index(lrs, smoothed)] == 1e-2


def test_minimum_suggestion_and_unknown_method() -> None:
    result = LRFinderResult([1e-3, 1e-2, 1e-1], [1.0, 0.5, 2.0], [1.0, 0.5, 2.0])
    assert result.min_loss_lr == 1e-2
    assert result.suggestion("minimum") == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="'steepest' or 'minimum'"):
        result.suggestion("valley")


def test_the_minimum_skips_the_first_tenth_as_the_steepest_search_does() -> None:
    lrs = [10.0**k for k in range(-8, 2)]
    smoothed = [0.1, 1.0, 0.9, 0.7, 0.5, 0.3, 0.2, 0.25, 0.4, 3.0]  # a lucky first batch
    result = LRFinderResult(lrs, smoothed, smoothed)
    assert result.min_loss_lr == 1e-2
    assert result.suggestion("minimum") == pytest.approx(1e-3)


@pytest.mark.parametrize("shift", [0.0, -5.0])
def test_a_loss_below_zero_diverges_only_when_it_rises(shift: float) -> None:
    x, y = _linear_data()
    task = ClassificationTask(loss=lambda out, t: torch.nn.functional.cross_entropy(out, t) + shift)
    trainer = Trainer(batch_size=32, optimizer="sgd", progress=False, seed=0, task=task)
    result = trainer.lr_find(_linear_model(), (x, y), min_lr=1e-4, max_lr=1e-1, num_steps=30)
    assert not result.diverged  # small, growing rates: the loss falls throughout
    assert len(result.lrs) == 30
    assert result.losses[-1] < result.losses[0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_lr": 1.0, "max_lr": 0.1}, "0 < min_lr < max_lr"),
        ({"min_lr": 0.0}, "0 < min_lr < max_lr"),
        ({"num_steps": 1}, "num_steps"),
        ({"smoothing": 1.0}, "smoothing"),
        ({"divergence_factor": 1.0}, "divergence_factor"),
    ],
)
def test_bad_settings_raise_before_any_step(kwargs: dict[str, float], match: str) -> None:
    x, y = _linear_data()
    with pytest.raises(ValueError, match=match):
        _trainer("sgd").lr_find(_linear_model(), (x, y), **kwargs)  # type: ignore[arg-type]


def test_a_non_finite_first_loss_gives_a_clear_error() -> None:
    x, y = _linear_data()
    linear = nn.Linear(12, 2)
    with torch.no_grad():
        linear.bias.fill_(float("inf"))
    model = nn.Sequential(nn.Flatten(), linear)
    with pytest.raises(ValueError, match="first step"):
        _trainer("sgd").lr_find(model, (x, y), num_steps=5)


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    result = LRFinderResult([1e-3, 1e-2, 1e-1], [1.0, 0.5, 2.0], [1.0, 0.6, 1.2])
    path = result.plot(tmp_path / "lr.png", title="range test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    result = LRFinderResult([1e-3, 1e-2], [1.0, 0.5], [1.0, 0.6])
    with pytest.raises(ImportError, match=r"pip install matplotlib` \(rnnkit's `plot` extra\)"):
        result.plot()
