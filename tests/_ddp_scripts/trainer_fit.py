"""``Trainer(strategy="ddp")`` on 2 ranks: a small fit, optionally crashing once (torchrun).

Usage: ``trainer_fit.py OUT MODE`` with MODE ``straight`` (4 epochs) or ``crash`` (rank 1
raises at the end of epoch 1 on the first attempt; run with ``torchrun --max-restarts 1``,
the restarted group resumes from ``last.ckpt``). Each rank saves ``rank{r}.pt`` under OUT
(weights, History); rank 0 prints ``attempt A started at epoch E`` for the test to read.
The test trains the single-process reference in its own process with :func:`fit_single`
(same settings, ``batch_size = PER_RANK_BATCH x WORLD_SIZE``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from _ddp_common import PER_RANK_BATCH, make_data

import rnnkit
from rnnkit.distributed import LaunchEnv
from rnnkit.trainer import Trainer

EPOCHS = 4
WORLD_SIZE = 2
CRASH_AFTER_EPOCH = 1


def trainer_settings() -> dict[str, Any]:
    """The Trainer arguments shared with the test's single-process reference."""
    return {"max_epochs": EPOCHS, "lr": 0.02, "seed": 0, "progress": False}


def make_classifier(seed: int) -> rnnkit.SequenceClassifier:
    torch.manual_seed(seed)
    return rnnkit.SequenceClassifier(3, 3, hidden_size=8)


class CrashOnce(rnnkit.Callback):
    """Rank 1 raises at the end of an epoch on the first attempt only."""

    def on_fit_start(self, trainer: Any) -> None:
        env = LaunchEnv.from_environ()
        if trainer.is_global_zero:
            print(f"attempt {env.restart_count} started at epoch {trainer.epoch}", flush=True)

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        env = LaunchEnv.from_environ()
        if env.rank == 1 and env.restart_count == 0 and epoch == CRASH_AFTER_EPOCH:
            raise RuntimeError(f"rank 1 crashed on purpose after epoch {epoch}")


def fit_single(out: Path) -> dict[str, Any]:
    """The reference: one process, the global batch size, the same data and settings."""
    checkpoint = rnnkit.ModelCheckpoint(out / "checkpoints")
    trainer = Trainer(
        batch_size=PER_RANK_BATCH * WORLD_SIZE, callbacks=[checkpoint], **trainer_settings()
    )
    model = make_classifier(seed=0)
    history = trainer.fit(model, make_data(37, seed=37), make_data(13, seed=513))
    return {"weights": model.state_dict(), "history": history.to_list()}


def main(out: Path, mode: str) -> None:
    env = LaunchEnv.from_environ()
    callbacks: list[rnnkit.Callback] = [rnnkit.ModelCheckpoint(out / "checkpoints")]
    if mode == "crash":
        callbacks.append(CrashOnce())
    options = {"strategy": "ddp", **trainer_settings()}  # a dict: typed before `strategy` lands
    trainer = Trainer(batch_size=PER_RANK_BATCH, callbacks=callbacks, **options)
    model = make_classifier(seed=env.rank)  # DDP must copy rank 0's weights
    history = trainer.fit(model, make_data(37, seed=37), make_data(13, seed=513), "last")
    result = {"weights": model.state_dict(), "history": history.to_list()}
    torch.save(result, out / f"rank{env.rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
