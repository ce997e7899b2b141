"""Gaussian noise on the inputs of every training batch, for the examples that train with it.

:class:`InputNoiseTrainer` is a :class:`rnnkit.Trainer` whose ``training_step`` adds the noise
(:func:`with_input_noise`) before the usual step: ``sine_wave.py`` uses it so that a model fed
its own slightly-off predictions pulls them back onto the sine, ``classify_series.py --noise``
as a data augmentation ("jitter") for small training splits.
"""

from __future__ import annotations

from typing import Any

import torch

from rnnkit import Trainer
from rnnkit.data import Batch
from rnnkit.training import StepOutput

__all__ = ["InputNoiseTrainer", "with_input_noise"]


class InputNoiseTrainer(Trainer):
    """A :class:`rnnkit.Trainer` that adds Gaussian noise to every training batch's inputs.

    Only the inputs get noise, and only at the steps within ``lengths`` (padding stays zero);
    the targets stay clean, so the model learns to map a perturbed input to the true target.
    Validation, evaluation and prediction see clean inputs.

    Args:
        noise_std: Standard deviation of the noise.
        noise_seed: Seed of the noise's own generator, or ``None`` to draw the noise from
            torch's global generator (seeded by the Trainer's ``seed``).
        **options: Everything else goes to :class:`rnnkit.Trainer`.
    """

    def __init__(self, *, noise_std: float, noise_seed: int | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.noise_std = noise_std
        self.noise_generator = (
            None if noise_seed is None else torch.Generator().manual_seed(noise_seed)
        )

    def training_step(self, batch: Batch, batch_idx: int) -> StepOutput:
        """Add noise to ``batch.x``, then run the usual training step."""
        noisy = with_input_noise(batch, self.noise_std, self.noise_generator)
        return super().training_step(noisy, batch_idx)


def with_input_noise(batch: Batch, std: float, generator: torch.Generator | None = None) -> Batch:
    """``batch`` with ``N(0, std²)`` added to ``x`` at every step within ``lengths``.

    The noise is drawn on the CPU (from ``generator``, else torch's global generator) and
    moved to ``x``'s device. ``std`` 0 returns ``batch`` itself and draws nothing.

    Shapes:
        - ``batch.x``: ``(N, L, H_in)``; ``batch.lengths``: ``(N,)`` or ``None``.
    """
    if std == 0:
        return batch
    noise = std * torch.randn(batch.x.shape, generator=generator).to(batch.x.device)
    if batch.lengths is not None:
        steps = torch.arange(batch.x.shape[1], device=batch.x.device)
        noise = noise * (steps < batch.lengths.to(batch.x.device).unsqueeze(1)).unsqueeze(2)
    return batch._replace(x=batch.x + noise)
