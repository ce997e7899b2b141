"""``Trainer(strategy="ddp")`` on 2 ranks: small fits, optionally crashing once (torchrun).

Usage: ``trainer_fit.py OUT MODE`` with MODE

- ``straight``: a classifier for 4 epochs (37 samples: the last global batch splits 3 + 2),
  then a regressor on padded series (33 samples: the last global batch is 1 sample and a
  filler) with a target so large that its batch's loss overflows to inf (``on_nan="skip"``:
  both ranks must skip that batch, though one alone holds the sample) and a stop that rank 1
  alone asks for after epoch 1 (both ranks must stop); then the classifier again, stopped by
  a KeyboardInterrupt in the middle of epoch 1 and resumed from its checkpoint; and an
  ``evaluate`` of a single sample, which leaves rank 1 nothing to evaluate;
- ``crash``: the classifier, rank 1 raising at the end of epoch 1 on the first attempt; with
  ``torchrun --max-restarts 1`` the restarted group resumes from ``last.ckpt``, without it
  the job ends with that error;
- ``resume``: the classifier again, with no crash, resuming from ``last.ckpt`` under OUT: a
  new launch after a ``crash`` launch ended with its error.

Each rank saves ``rank{r}.pt`` under OUT (weights, History); rank 0 prints ``attempt A
started at epoch E`` (in every mode) for the test to read. The test trains the single-process
references in its own process with :func:`fit_single` (same settings, ``batch_size =
PER_RANK_BATCH x WORLD_SIZE``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from _ddp_common import PER_RANK_BATCH, make_data, make_series

import rnnkit
from rnnkit.callbacks import GradientFlow
from rnnkit.distributed import LaunchEnv
from rnnkit.io.checkpoint import load_checkpoint
from rnnkit.training.trainer import Trainer

EPOCHS = 4
WORLD_SIZE = 2
CRASH_AFTER_EPOCH = 1
STOP_AFTER_EPOCH = 1
BAD_SAMPLE = 5
INTERRUPT_AT_STEP = 7  # 5 steps per epoch: epoch 1, after 2 of its batches


def trainer_settings() -> dict[str, Any]:
    """The Trainer arguments shared with the test's single-process reference."""
    return {"max_epochs": EPOCHS, "lr": 0.02, "seed": 0, "progress": False}


def make_classifier(seed: int) -> rnnkit.SequenceClassifier:
    torch.manual_seed(seed)
    return rnnkit.SequenceClassifier(3, 3, hidden_size=8)


class ReportStart(rnnkit.Callback):
    """Rank 0 prints the attempt and the epoch the fit starts at (after any resume)."""

    def on_fit_start(self, trainer: Any) -> None:
        env = LaunchEnv.from_environ()
        if trainer.is_global_zero:
            print(f"attempt {env.restart_count} started at epoch {trainer.epoch}", flush=True)


class CrashOnce(rnnkit.Callback):
    """Rank 1 raises at the end of an epoch on the first attempt only."""

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        env = LaunchEnv.from_environ()
        if env.rank == 1 and env.restart_count == 0 and epoch == CRASH_AFTER_EPOCH:
            raise RuntimeError(f"rank 1 crashed on purpose after epoch {epoch}")


class StopOnLastRank(rnnkit.Callback):
    """The last rank alone (the only one in a single process) asks to stop."""

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        last_rank = trainer.distributed.rank == trainer.world_size - 1
        if last_rank and epoch == STOP_AFTER_EPOCH:
            trainer.should_stop = True


class InterruptAt(rnnkit.Callback):
    """Raises KeyboardInterrupt (as Ctrl-C would) on every rank after a global step."""

    def on_batch_end(self, trainer: Any, batch_idx: int, outputs: dict[str, Any]) -> None:
        if trainer.global_step == INTERRUPT_AT_STEP:
            raise KeyboardInterrupt


def fit_interrupted(out: Path, rank: int) -> dict[str, Any]:
    """The classifier interrupted in the middle of epoch 1, then resumed by a new Trainer."""
    interrupted = []
    for extra in ([InterruptAt()], []):
        callbacks = [rnnkit.ModelCheckpoint(out / "interrupted"), *extra]
        trainer = Trainer(
            batch_size=PER_RANK_BATCH, callbacks=callbacks, strategy="ddp", **trainer_settings()
        )
        # The resuming Trainer starts from other weights: only the checkpoint restores them.
        model = make_classifier(seed=rank if extra else rank + 100)
        trainer.fit(model, make_data(37, seed=37), make_data(13, seed=513), "last")
        interrupted.append(trainer.interrupted)
    result = {"weights": model.state_dict(), "history": trainer.history.to_list()}
    return result | {"interrupted": interrupted}


def fit_dropout_resumed(out: Path) -> dict[str, Any]:
    """A dropout classifier straight, and stopped after epoch 0 then resumed: the weights.

    37 samples: the last global batch splits 3 + 2, so the ranks draw unequal dropout masks.
    """

    def fit(folder: str, epochs: int, resume: str | Path | None) -> dict[str, Any]:
        torch.manual_seed(0)
        model = rnnkit.SequenceClassifier(3, 3, hidden_size=8, num_layers=2, dropout=0.5)
        callbacks: list[rnnkit.Callback] = [rnnkit.ModelCheckpoint(out / folder)]
        if folder == "dropout_straight":  # a save after epoch 1's order is drawn
            callbacks.append(SaveAtEpochStart(1, out / "dropout_epoch_start.ckpt"))
        settings = trainer_settings() | {"max_epochs": epochs, "callbacks": callbacks}
        trainer = Trainer(batch_size=PER_RANK_BATCH, strategy="ddp", **settings)
        trainer.fit(model, make_data(37, seed=37), resume_from=resume)
        return model.state_dict()

    straight = fit("dropout_straight", 3, None)
    fit("dropout_resumed", 1, None)  # ends after epoch 0, as a crashed run would
    resumed = fit("dropout_resumed", 3, "last")
    from_start = fit("dropout_from_start", 3, out / "dropout_epoch_start.ckpt")
    return {"straight": straight, "resumed": resumed, "from_epoch_start": from_start}


class SaveAtEpochStart(rnnkit.Callback):
    """Saves a checkpoint when epoch ``epoch`` starts (every rank calls; rank 0 writes)."""

    def __init__(self, epoch: int, path: Path) -> None:
        self.epoch, self.path = epoch, path

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        if epoch == self.epoch:
            trainer.save_checkpoint(self.path)
            trainer.distributed.barrier()  # written before any rank reads it


def fit_regressor(batch_size: int, out: Path) -> dict[str, Any]:
    """A regressor on padded series with one overflowing target; weights, History, stop saved."""
    x, y, lengths = make_series(33, seed=33)
    y[BAD_SAMPLE, 0, 0] = 1e30  # squared in float32: inf
    torch.manual_seed(1)
    model = rnnkit.Seq2SeqRegressor(2, 1, hidden_size=6)
    callbacks = [rnnkit.ModelCheckpoint(out / "regressor"), StopOnLastRank()]
    if LaunchEnv.from_environ().rank == 0:  # a callback of rank 0's alone must not block
        callbacks.append(GradientFlow(x[:3], y[:3], lengths[:3], warn=False))
    settings = trainer_settings() | {"on_nan": "skip", "callbacks": callbacks}
    trainer = Trainer(batch_size=batch_size, **settings)
    history = trainer.fit(model, (x, y, lengths), make_series(9, seed=9))
    saved = load_checkpoint(out / "regressor" / "last.ckpt")
    result = {"weights": model.state_dict(), "history": history.to_list()}
    return result | {"saved_stop": saved["trainer"]["should_stop"]}


def fit_single(out: Path) -> dict[str, Any]:
    """The references: one process, the global batch size, the same data and settings."""
    checkpoint = rnnkit.ModelCheckpoint(out / "checkpoints")
    trainer = Trainer(
        batch_size=PER_RANK_BATCH * WORLD_SIZE, callbacks=[checkpoint], **trainer_settings()
    )
    model = make_classifier(seed=0)
    history = trainer.fit(model, make_data(37, seed=37), make_data(13, seed=513))
    one_sample = trainer.evaluate(model, make_data(1, seed=1))
    regressor = fit_regressor(PER_RANK_BATCH * WORLD_SIZE, out)
    result = {"weights": model.state_dict(), "history": history.to_list()}
    return result | {"one_sample": one_sample, "regressor": regressor}


def main(out: Path, mode: str) -> None:
    env = LaunchEnv.from_environ()
    flow = GradientFlow(*make_data(4, seed=4), warn=False)  # logged by every rank
    callbacks: list[rnnkit.Callback] = [rnnkit.ModelCheckpoint(out / "checkpoints")]
    callbacks += [ReportStart(), flow]
    if mode == "crash":
        callbacks.append(CrashOnce())
    trainer = Trainer(
        batch_size=PER_RANK_BATCH, callbacks=callbacks, strategy="ddp", **trainer_settings()
    )
    model = make_classifier(seed=env.rank)  # DDP must copy rank 0's weights
    history = trainer.fit(model, make_data(37, seed=37), make_data(13, seed=513), "last")
    result = {"weights": model.state_dict(), "history": history.to_list()}
    if mode == "straight":
        result["one_sample"] = trainer.evaluate(model, make_data(1, seed=1))  # rank 1: none
        result["regressor"] = fit_regressor(PER_RANK_BATCH, out)
        result["interrupted"] = fit_interrupted(out, env.rank)
        result["dropout"] = fit_dropout_resumed(out)
    torch.save(result, out / f"rank{env.rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
