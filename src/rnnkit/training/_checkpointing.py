"""The Trainer's checkpoint rules: the trainer state's layout, callbacks' states, files.

Plain functions over the pieces they need (a state dict, the callbacks, the optimizer): the
:class:`~rnnkit.Trainer` calls them from ``state_dict``, ``load_state_dict``,
``save_checkpoint`` and ``fit(resume_from=...)``.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rnnkit.callbacks import Callback
from rnnkit.callbacks.model_checkpoint import LAST_NAME, ModelCheckpoint
from rnnkit.errors import CheckpointError
from rnnkit.io.checkpoint import atomic_save, load_checkpoint, make_checkpoint
from rnnkit.io.run_folder import MARKER_NAME, checkpoint_names, ranked_files, read_owner
from rnnkit.training._stateful import state_entry

if TYPE_CHECKING:
    from rnnkit.training.trainer import Trainer

__all__ = [
    "STATE_KEYS",
    "STATE_VERSION",
    "callback_states",
    "callbacks_with_state",
    "check_resume_layout",
    "check_scheduler_state",
    "check_state",
    "interrupt_path",
    "last_candidates",
    "latest_checkpoint",
    "load_callback_states",
    "load_optimizers",
    "resolve_resume_path",
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
    check_scheduler_state(state, scheduler)
    if state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    if state["scaler"] is not None and scaler.is_enabled():
        scaler.load_state_dict(state["scaler"])


def check_scheduler_state(state: Mapping[str, Any], scheduler: Any) -> None:
    """Refuse a state that holds a scheduler's when the Trainer has none (before loading).

    Raises:
        rnnkit.errors.CheckpointError: The state holds a scheduler's, but there is none.
    """
    if state["scheduler"] is not None and scheduler is None:
        raise CheckpointError(
            "Expected a Trainer with a `scheduler` to resume this checkpoint, which holds a "
            "scheduler's state, but it has none. Hint: pass the same scheduler= as the run "
            "that wrote it."
        )


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


def callbacks_with_state(
    callbacks: Sequence[Callback], states: Mapping[str, Any]
) -> list[Callback]:
    """The callbacks :func:`load_callback_states` would give a state from ``states``."""
    keys = zip(_callback_keys(callbacks), callbacks, strict=True)
    return [callback for key, callback in keys if key in states]


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


_Progress = tuple[tuple[int, int, int], set[str]]
"""A checkpoint's ``(epoch, position, global_step)`` and the run ids of its callback states."""


def resolve_resume_path(
    resume_from: str | os.PathLike[str], callbacks: Sequence[Callback], root: Path
) -> Path | None:
    """The file ``resume_from`` names; for ``"last"``, the latest of this run's, or ``None``.

    ``"last"`` looks in this run's folders only: the newest (by the progress saved inside) of
    each ModelCheckpoint's latest checkpoint (see :func:`latest_checkpoint`) when there is one
    (``root`` may hold another experiment's interrupted run), else ``root/last.ckpt``.
    ``None`` (a fresh start, logged) when there is none yet.

    Raises:
        rnnkit.errors.CheckpointError: For ``"last"``: no checkpoint is found, but a
            ModelCheckpoint's folder holds checkpoints, which a fresh run may not overwrite
            (without ``overwrite=True``); raised before any training.
    """
    if str(resume_from) != "last":
        return Path(resume_from)
    checkpoints = _model_checkpoints(callbacks)
    if not checkpoints and (root / LAST_NAME).is_file():
        return root / LAST_NAME
    progress = functools.cache(_saved_progress)  # each candidate is read (and warned of) once
    found = [p for cb in checkpoints if (p := latest_checkpoint(cb, progress)) is not None]
    if found:
        return found[0] if len(found) == 1 else _newest(found, progress)
    for callback in checkpoints:
        _refuse_fresh_start(callback)
    logger.info("rnnkit: resume_from='last' found no checkpoint; training starts afresh.")
    return None


def latest_checkpoint(
    callback: ModelCheckpoint, progress: Callable[[Path], _Progress | None] | None = None
) -> Path | None:
    """The checkpoint of ``callback``'s folder that ``resume_from="last"`` continues, or ``None``.

    With ``save_last`` and a ``last.ckpt``: :attr:`ModelCheckpoint.last_path
    <rnnkit.ModelCheckpoint.last_path>`, if the run that owns the folder wrote it (any run,
    in a folder without a marker, e.g. one copied without its hidden files). Otherwise
    (``save_last=False``, where a ``last.ckpt`` is only an interrupted fit's and may be older
    than the ranked files, or no ``last.ckpt`` of that run) the newest, by the epoch,
    position and global step saved inside (not the file times), of the checkpoints written
    by the run that owns the folder (its marker): ``last.ckpt`` and the ranked files; a
    ranked file is written at the end of an epoch with the full trainer state, like
    ``last.ckpt``. A file that cannot be read is skipped with a warning; only regular files
    directly inside the folder are read. ``progress`` reads a file's saved progress
    (default: ``_saved_progress``; ``resolve_resume_path`` passes a cached one).
    """
    progress = progress or _saved_progress
    folder = callback.dirpath
    last = folder / LAST_NAME
    has_last = last.is_file() and not last.is_symlink()
    owner = read_owner(folder) if folder.is_dir() else None
    run = None if owner is None or not owner.run_id else owner.run_id
    if callback.save_last and has_last:
        latest = callback.last_path
        saved = None if latest is None else progress(latest)
        if latest is not None and saved is not None and (run is None or run in saved[1]):
            return latest
    paths = [folder / name for name in ranked_files(folder)]
    found: list[tuple[tuple[int, int, int], bool, Path]] = []
    for path in [last, *paths] if has_last else paths:
        saved = progress(path)
        if saved is not None and (run is None or run in saved[1]):  # not another run's
            found.append((saved[0], path == last, path))
    if not found:
        return None
    (epoch, _, step), _, path = max(found)  # a tie goes to last.ckpt
    if path != last:
        logger.info(
            "rnnkit: resume_from='last' found no up-to-date last.ckpt in %r (save_last=%s); "
            "resuming from its newest ranked checkpoint %r (global step %d, epoch %d next).",
            str(folder),
            callback.save_last,
            path.name,
            step,
            epoch,
        )
    return path


def _newest(paths: list[Path], progress: Callable[[Path], _Progress | None]) -> Path:
    """The furthest of ``paths`` (by saved progress) of the first readable one's run.

    Each folder's candidate is its owner's; the first folder's run is this run, and another
    run's file in a second folder is never preferred to it.
    """
    read = [(p, saved) for p in paths if (saved := progress(p)) is not None]
    if not read:
        return paths[0]
    runs = read[0][1][1]

    def same_run(other: set[str]) -> bool:  # files without a run id match only each other
        return bool(other & runs) if runs else not other

    ours = [(saved[0], -index, p) for index, (p, saved) in enumerate(read) if same_run(saved[1])]
    for p, saved in read:
        if not same_run(saved[1]):
            _skip(p, "it belongs to another run than the first folder's")
    return max(ours)[2]


def _saved_progress(path: Path) -> _Progress | None:
    """``((epoch, position, global_step), run ids of its callback states)``; ``None``: unreadable.

    The checkpoint is data: a value of the wrong type makes the file unreadable, never an
    error of the fit.
    """
    try:
        checkpoint = load_checkpoint(path, map_location="cpu")
    except CheckpointError as exc:
        _skip(path, str(exc))
        return None
    state = checkpoint["trainer"]
    epoch, position, step = (state.get(key) for key in ("epoch", "position", "global_step"))
    if type(epoch) is not int or type(position) is not int or type(step) is not int:
        _skip(path, f"its epoch, position and global step are {epoch!r}, {position!r}, {step!r}")
        return None
    runs = {
        value["run_id"]
        for value in checkpoint["callbacks"].values()
        if isinstance(value, dict) and isinstance(value.get("run_id"), str) and value["run_id"]
    }
    return (epoch, position, step), runs


def _skip(path: Path, why: str) -> None:
    warnings.warn(
        f"rnnkit: resume_from='last' skipped {str(path)!r}, which cannot be resumed: {why}",
        UserWarning,
        stacklevel=4,
    )


def _refuse_fresh_start(callback: ModelCheckpoint) -> None:
    """Raise when a fresh run may not start in ``callback``'s folder (it holds checkpoints)."""
    folder = callback.dirpath
    names = [] if callback.overwrite or not folder.is_dir() else checkpoint_names(folder)
    if not names:
        return
    shown = ", ".join(names[:3]) + (f", ... ({len(names)} in all)" if len(names) > 3 else "")
    raise CheckpointError(
        f"Expected resume_from='last' to find a checkpoint of the run that owns "
        f"{str(folder)!r} (its last.ckpt, or with save_last=False its newest ranked file), "
        f"but none of the checkpoints there ({shown}) is a readable one of that run (the "
        f"marker {MARKER_NAME!r} names the run), and a fresh start would overwrite them. "
        f"Hint: to continue from one of them, pass its path, e.g. fit(..., resume_from="
        f"{str(folder / names[0])!r}), with ModelCheckpoint(<another dirpath>) unless it is "
        f"this folder's run; to start afresh, pass another `dirpath`, or "
        f"ModelCheckpoint(..., overwrite=True) to take the folder over."
    )


def interrupt_path(callbacks: Sequence[Callback], root: Path) -> Path:
    """Where an interrupted run saves: the first ModelCheckpoint's folder, else ``root``."""
    checkpoints = _model_checkpoints(callbacks)
    folder = checkpoints[0].dirpath if checkpoints else root
    return folder / LAST_NAME
