"""The learning-rate range test behind :meth:`rnnkit.Trainer.lr_find`.

The test trains a *copy* of the model for a bounded number of steps while the learning rate
grows exponentially from ``min_lr`` to ``max_lr``, records the loss of every step and smooths
it with a bias-corrected exponential moving average. It stops early once the smoothed loss
exceeds ``divergence_factor`` times the best seen (or a loss is NaN/infinite): past that
point the rate is far too large. The user's model, any optimizer from an earlier fit, the
Trainer's run state and the global random generators are left exactly as they were.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from rnnkit._validate import check_int
from rnnkit.data import Batch
from rnnkit.shapes import State
from rnnkit.tasks import Task, detach_state
from rnnkit.training import _setup
from rnnkit.training._batches import (
    BatchSource,
    IndexedSource,
    as_source,
    input_dtype,
    to_device,
)
from rnnkit.training._rng import capture_rng, restore_rng

if TYPE_CHECKING:
    from rnnkit.training.trainer import Trainer

__all__ = ["LRFinderResult", "run_lr_find"]

_PLOT_HINT = (
    "LRFinderResult.plot needs matplotlib, which is not installed. Install it with "
    "`pip install matplotlib` (rnnkit's `plot` extra)."
)


@dataclass
class LRFinderResult:
    """The curve of a learning-rate range test and the rate it suggests.

    Built by :meth:`rnnkit.Trainer.lr_find`. The suggestion is the rate of the **steepest
    descent** of the smoothed loss against ``log10(lr)``, looked for only before the smoothed
    loss reaches its minimum (beyond it the loss no longer improves). :attr:`min_loss_lr` / 10
    is a more conservative alternative (:meth:`suggestion` with ``method="minimum"``).

    Attributes:
        lrs: The learning rate of every step taken, increasing.
        losses: The training loss of every step, unsmoothed.
        smoothed_losses: The bias-corrected exponential moving average of ``losses``.
        diverged: Whether the test stopped early because the loss blew up.
    """

    lrs: list[float]
    losses: list[float]
    smoothed_losses: list[float]
    diverged: bool = False
    _steepest: int = field(default=0, repr=False)

    @property
    def suggested_lr(self) -> float:
        """The suggested learning rate, where the smoothed loss falls fastest."""
        return self.suggestion("steepest")

    @property
    def min_loss_lr(self) -> float:
        """The learning rate at which the smoothed loss was lowest, after the first tenth.

        The first tenth of the steps is left out, as for the steepest fall: their average
        rests on few batches.
        """
        skip = len(self.smoothed_losses) // 10
        return self.lrs[skip + _argmin(self.smoothed_losses[skip:])]

    def suggestion(self, method: str = "steepest") -> float:
        """A suggested learning rate.

        Args:
            method: ``"steepest"``: where the smoothed loss falls fastest per decade of rate
                (before its minimum); ``"minimum"``: a tenth of :attr:`min_loss_lr`.

        Raises:
            ValueError: An unknown method.
        """
        if method == "steepest":
            return self.lrs[self._steepest]
        if method == "minimum":
            return self.min_loss_lr / 10
        raise ValueError(
            f"Expected `method` to be 'steepest' or 'minimum', but got {method!r}. Hint: "
            "'steepest' is suggested_lr; 'minimum' a tenth of min_loss_lr."
        )

    def plot(self, path: str | Path | None = None, title: str | None = None) -> Path:
        """Plot the loss against the learning rate (log scale) and save it as a PNG.

        Draws the raw and the smoothed loss and marks the suggested rate. Uses matplotlib's
        Agg renderer directly (no pyplot), so it works headless.

        Args:
            path: Where to write the PNG; default ``"lr_find.png"`` in the working directory.
            title: Figure title; default none.

        Returns:
            The path written.

        Raises:
            ImportError: If matplotlib is missing (``pip install matplotlib``).
        """
        figure_cls, canvas_cls = _matplotlib()
        figure = figure_cls(figsize=(6.4, 4.0), dpi=100)
        canvas_cls(figure)
        axes = figure.add_subplot()
        axes.plot(self.lrs, self.losses, alpha=0.3, label="loss")
        axes.plot(self.lrs, self.smoothed_losses, label="smoothed loss")
        axes.axvline(self.suggested_lr, color="red", linestyle="--", label="suggested lr")
        axes.set_xscale("log")
        axes.set_xlabel("learning rate")
        axes.set_ylabel("training loss")
        axes.grid(visible=True, alpha=0.3)
        axes.legend()
        if title is not None:
            axes.set_title(title)
        out = Path("lr_find.png" if path is None else path)
        figure.savefig(out, format="png")
        return out


def _matplotlib() -> tuple[Any, Any]:
    """Return matplotlib's ``Figure`` and Agg canvas classes, imported on first use."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(_PLOT_HINT) from err
    return Figure, FigureCanvasAgg


def _argmin(values: list[float]) -> int:
    return min(range(len(values)), key=lambda i: values[i])


def steepest_index(lrs: list[float], smoothed: list[float]) -> int:
    """The step where the smoothed loss falls fastest against ``log10(lr)``, before its minimum.

    The first tenth of the steps is left out (their average rests on few losses, so a lucky
    first batch can look like the minimum). The slope at step i is the central difference of
    the loss over the log rates (one-sided at the ends), as :func:`numpy.gradient` has it.
    """
    skip = len(smoothed) // 10
    end = skip + _argmin(smoothed[skip:]) + 1
    if end - skip < 3:
        return skip
    logs = [math.log10(lr) for lr in lrs]

    def slope(i: int) -> float:
        after, before = min(i + 1, end - 1), max(i - 1, skip)
        return (smoothed[after] - smoothed[before]) / (logs[after] - logs[before])

    return min(range(skip, end), key=slope)


@dataclass
class RangeTest:
    """The settings of one range test (checked by :func:`check_range`)."""

    min_lr: float
    max_lr: float
    num_steps: int
    smoothing: float
    divergence_factor: float

    def lr_at(self, step: int) -> float:
        """``min_lr`` at step 0, ``max_lr`` at the last step, geometric in between."""
        if self.num_steps == 1:
            return self.min_lr
        fraction = step / (self.num_steps - 1)
        return float(self.min_lr * (self.max_lr / self.min_lr) ** fraction)


def check_range(test: RangeTest) -> None:
    """Raise for settings the range test cannot run with.

    Raises:
        ValueError: Non-positive or inverted rates, fewer than 2 steps, a smoothing outside
            [0, 1) or a divergence factor not above 1.
        TypeError: ``num_steps`` is not an int.
    """
    check_int("num_steps", test.num_steps, 2)
    if not 0 < test.min_lr < test.max_lr or not math.isfinite(test.max_lr):
        raise ValueError(
            f"Expected 0 < min_lr < max_lr (finite), but got min_lr={test.min_lr!r}, "
            f"max_lr={test.max_lr!r}. Hint: the defaults 1e-7 and 10 span most models."
        )
    if not 0 <= test.smoothing < 1:
        raise ValueError(
            f"Expected `smoothing` in [0, 1), but got {test.smoothing!r}. Hint: 0 keeps the "
            "raw losses; the default 0.9 weighs the past nine times as much as the new loss."
        )
    if not test.divergence_factor > 1:
        raise ValueError(
            f"Expected `divergence_factor` > 1, but got {test.divergence_factor!r}. Hint: the "
            "default 4 stops once the smoothed loss is four times its best."
        )


def _endless_batches(
    source: BatchSource, batch_size: int, generator: torch.Generator, shuffle: bool
) -> Iterator[Batch]:
    """The source's batches, epoch after epoch (indexed data reshuffled every epoch)."""
    while True:
        order = None
        if shuffle and isinstance(source, IndexedSource):
            order = torch.randperm(source.num_samples, generator=generator)
        empty = True
        for batch in source.batches(batch_size, order):
            empty = False
            yield batch
        if empty:
            return


def _train_batch(
    trainer: Trainer, task: Task, model: nn.Module, optimizer: Any, scaler: Any, batch: Batch
) -> float:
    """One update per chunk of ``batch`` (per TBPTT window); the batch's mean loss."""
    state: State | None = None
    total, count = 0.0, 0
    for chunk in task.chunks(batch):
        with trainer.precision_plugin.autocast():
            output, state = task.forward(model, chunk, state)
            loss = task.loss(output, chunk)
        torch.autograd.backward(scaler.scale(loss))
        if trainer.options.grad_clip_norm is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), trainer.options.grad_clip_norm)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        state = detach_state(state)
        total += float(loss.detach()) * chunk.elements
        count += chunk.elements
    return total / max(count, 1)


def _sweep(
    trainer: Trainer, task: Task, model: nn.Module, source: BatchSource, test: RangeTest
) -> LRFinderResult:
    """Train ``model`` at growing rates; stop at ``num_steps`` or on divergence."""
    optimizer = trainer.configure_optimizer(model)
    optimizer.zero_grad(set_to_none=True)
    scaler = trainer.precision_plugin.make_scaler()
    generator = torch.Generator().manual_seed(0 if trainer.seed is None else trainer.seed)
    batches = _endless_batches(source, trainer.batch_size, generator, trainer.options.shuffle)
    result = LRFinderResult([], [], [])
    average, best = 0.0, math.inf
    dtype = input_dtype(model)  # inputs cast as fit casts them (a model.double() trains)
    for step, batch in zip(range(test.num_steps), batches, strict=False):
        lr = test.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = to_device(batch, trainer.device, dtype)
        loss = _train_batch(trainer, task, model, optimizer, scaler, batch)
        if not math.isfinite(loss):
            result.diverged = True
            break
        average = test.smoothing * average + (1 - test.smoothing) * loss
        smoothed = average / (1 - test.smoothing ** (step + 1))
        result.lrs.append(lr)
        result.losses.append(loss)
        result.smoothed_losses.append(smoothed)
        best = min(best, smoothed)
        # "factor times the best" measured from the best, so that a loss below 0 works too
        if step > 0 and smoothed - best > (test.divergence_factor - 1) * abs(best):
            result.diverged = True
            break
    return result


def run_lr_find(trainer: Trainer, model: nn.Module, train: Any, test: RangeTest) -> LRFinderResult:
    """Run the range test on a copy of ``model`` (see :meth:`rnnkit.Trainer.lr_find`).

    Raises:
        ValueError: The settings are out of range, the data do not fit the model, or the
            first step's loss is already NaN or infinite.
    """
    check_range(test)
    task = _setup.trainer_task(trainer, model)
    source = as_source(train, "train")
    task.check_setup(model, [("train", source.info())])
    rng = capture_rng()
    try:
        # A copy: the caller's weights, buffers and any optimizer bound to them stay untouched.
        probe = copy.deepcopy(model).to(trainer.device).train()
        result = _sweep(trainer, task, probe, source, test)
    finally:
        restore_rng(rng)  # dropout and the like drew from the global generators
    if not result.lrs:
        raise ValueError(
            f"Expected a finite loss at the first step (lr = {test.min_lr:g}), but it was NaN "
            "or infinite. Hint: check the model's weights for NaN or infinite values."
        )
    result._steepest = steepest_index(result.lrs, result.smoothed_losses)
    return result
