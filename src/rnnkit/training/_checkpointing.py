"""The Trainer's checkpoint rules: the trainer state's layout, callbacks' states, files.

Plain functions over the pieces they need (a state dict, the callbacks, the optimizer): the
:class:`~rnnkit.Trainer` calls them from ``state_dict``, ``load_state_dict``,
``save_checkpoint`` and ``fit(resume_from=...)``.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rnnkit.callbacks import Callback
from rnnkit.callbacks.model_checkpoint import LAST_NAME, ModelCheckpoint
from rnnkit.errors import CheckpointError
from rnnkit.io.checkpoint import atomic_save, make_checkpoint
from rnnkit.training._stateful import state_entry

if TYPE_CHECKING:
    from rnnkit.training.trainer import Trainer

__all__ = [
    "STATE_KEYS",
    "STATE_VERSION",
    "callback_states",
    "check_resume_layout",
    "check_state",
    "interrupt_path",
    "last_candidates",
    "load_callback_states",
    "load_optimizers",
    "resolve_resume_path",
    "resume_candidates",
    "save_checkpoint",
    "saved_fused",
    "trainer_state",
]

logger = logging.getLogger("rnnkit")

STATE_VERSION = 1
"""Version of the layout ``Trainer.state_dict`` returns."""

STATE_KEYS = (
    "version",
    "epoch",
    "position",
    "global_step",
    "permutation",
    "totals",
    "optimizer",
    "scheduler",
    "scaler",
    "history",
    "rng",
    "should_stop",
    "skipped_batches",
    "batch_size",
    "world_size",
)


def trainer_state(trainer: Trainer) -> dict[str, Any]:
    """The body of ``Trainer.state_dict``: the run state, optimizers, History and layout."""
    optimizer, scheduler, scaler = trainer.optimizer, trainer.scheduler, trainer.scaler
    return {
        "version": STATE_VERSION,
        **trainer.run.state_dict(trainer.device),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "optimizer_class": None if optimizer is None else type(optimizer).__name__,
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "scaler": None if scaler is None or not scaler.is_enabled() else scaler.state_dict(),
        "history": trainer.history.state_dict(),
        "batch_size": trainer.batch_size,
        "world_size": trainer.distributed.world_size,
        **state_entry(trainer.stream_carry),
    }


def save_checkpoint(trainer: Trainer, path: str | os.PathLike[str]) -> None:
    """The body of ``Trainer.save_checkpoint``: rank 0 writes model and state atomically.

    Raises:
        RuntimeError: No fit has started (there is no model).
        rnnkit.errors.CheckpointError: The write failed (the previous file stays intact).
    """
    if trainer.model is None:
        raise RuntimeError("Trainer.save_checkpoint: no model yet; call fit() first.")
    if not trainer.distributed.is_global_zero:
        return
    state = trainer.state_dict()  # through the method: a subclass may extend it
    checkpoint = make_checkpoint(trainer.model, state, trainer.callback_states())
    atomic_save(checkpoint, path)


def check_state(state: Mapping[str, Any]) -> None:
    """Raise unless ``state`` is a trainer state this version can load.

    Raises:
        rnnkit.errors.CheckpointError: The state lacks keys or has a newer version.
    """
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        raise CheckpointError(
            f"Expected a Trainer state with keys {list(STATE_KEYS)}, but {missing} are "
            "missing. Hint: pass what Trainer.state_dict() returned (checkpoint['trainer'])."
        )
    if int(state["version"]) > STATE_VERSION:
        raise CheckpointError(
            f"Expected a Trainer state of version <= {STATE_VERSION}, but got version "
            f"{state['version']}. Hint: upgrade rnnkit to resume this run."
        )


def check_resume_layout(state: Mapping[str, Any], batch_size: int, world_size: int) -> None:
    """In the middle of an epoch, the batch size and the world size must be the saved ones.

    Raises:
        rnnkit.errors.CheckpointError: Another batch size or number of processes.
    """
    if int(state["position"]) == 0:
        return
    saved = int(state["batch_size"])
    if saved != batch_size:
        raise CheckpointError(
            f"Expected batch_size = {saved} to resume in the middle of an epoch (the "
            f"position counts batches of that size), but the Trainer has batch_size = "
            f"{batch_size}. Hint: resume with Trainer(batch_size={saved}, ...)."
        )
    processes = int(state["world_size"])
    if processes != world_size:
        raise CheckpointError(
            f"Expected {processes} process(es) to resume in the middle of an epoch (the "
            f"position counts global batches of batch_size x {processes}), but this run "
            f"has {world_size}. Hint: relaunch with `torchrun --nproc-per-node {processes}` "
            "(or plain `python` for 1), or resume from a checkpoint saved at an epoch's end."
        )


def load_optimizers(
    state: Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
) -> None:
    """Put the saved optimizer, scheduler and scaler states into the fresh objects.

    Raises:
        rnnkit.errors.CheckpointError: The state holds a scheduler's, but there is none.
    """
    if state["optimizer"] is not None:
        optimizer.load_state_dict(state["optimizer"])
    if state["scheduler"] is not None:
        if scheduler is None:
            raise CheckpointError(
                "Expected a Trainer with a `scheduler` to resume this checkpoint, which "
                "holds a scheduler's state, but it has none. Hint: pass the same "
                "scheduler= as the run that wrote it."
            )
        scheduler.load_state_dict(state["scheduler"])
    if state["scaler"] is not None and scaler.is_enabled():
        scaler.load_state_dict(state["scaler"])


def saved_fused(state: Mapping[str, Any] | None) -> bool | None:
    """Whether the optimizer of the state to resume was fused; ``None`` for a fresh run."""
    optimizer = None if state is None else state.get("optimizer")
    groups = None if not isinstance(optimizer, dict) else optimizer.get("param_groups")
    if not groups:
        return None
    return bool(groups[0].get("fused"))


def _callback_keys(callbacks: Sequence[Callback]) -> list[str]:
    names = [type(cb).__name__ for cb in callbacks]
    totals, seen = Counter(names), Counter[str]()
    keys = []
    for name in names:
        keys.append(name if totals[name] == 1 else f"{name}_{seen[name]}")
        seen[name] += 1
    return keys


def callback_states(callbacks: Sequence[Callback]) -> dict[str, Any]:
    """``{key: callback.state_dict()}`` for the callbacks with state (key: class name)."""
    states = {}
    for key, callback in zip(_callback_keys(callbacks), callbacks, strict=True):
        state = callback.state_dict()
        if state:
            states[key] = state
    return states


def load_callback_states(callbacks: Sequence[Callback], states: Mapping[str, Any]) -> None:
    """Give each callback its state from :func:`callback_states` (matched by key)."""
    for key, callback in zip(_callback_keys(callbacks), callbacks, strict=True):
        if key in states:
            callback.load_state_dict(states[key])


def _model_checkpoints(callbacks: Sequence[Callback]) -> list[ModelCheckpoint]:
    return [cb for cb in callbacks if isinstance(cb, ModelCheckpoint)]


def last_candidates(callbacks: Sequence[Callback], root: Path) -> list[Path]:
    """Where the latest checkpoint may be: each ModelCheckpoint's, then ``root``'s."""
    paths: list[Path] = []
    for callback in _model_checkpoints(callbacks):
        if callback.last_path is not None:
            paths.append(Path(callback.last_path))
        paths.append(callback.dirpath / LAST_NAME)
    return [*paths, root / LAST_NAME]


def resume_candidates(callbacks: Sequence[Callback], root: Path) -> list[Path]:
    """Where ``"last"`` looks: this run's folder only.

    The ModelCheckpoints' files when there is one (``root`` may hold another experiment's
    interrupted run), else ``root/last.ckpt``.
    """
    candidates = last_candidates(callbacks, root)
    return candidates[:-1] if _model_checkpoints(callbacks) else candidates


def resolve_resume_path(
    resume_from: str | os.PathLike[str], callbacks: Sequence[Callback], root: Path
) -> Path | None:
    """The file ``resume_from`` names; for ``"last"``, the latest of this run's, or ``None``."""
    if str(resume_from) != "last":
        return Path(resume_from)
    for path in resume_candidates(callbacks, root):
        if path.is_file():
            return path
    logger.info("rnnkit: resume_from='last' found no checkpoint; training starts afresh.")
    return None


def interrupt_path(callbacks: Sequence[Callback], root: Path) -> Path:
    """Where an interrupted run saves: the first ModelCheckpoint's folder, else ``root``."""
    checkpoints = _model_checkpoints(callbacks)
    folder = checkpoints[0].dirpath if checkpoints else root
    return folder / LAST_NAME
