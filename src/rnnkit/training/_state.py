"""The Trainer's run state: checkpoints, exact resume, interrupts and divergence.

:class:`TrainerState` is the base class of :class:`rnnkit.Trainer`. It owns everything a
checkpoint must hold besides the model, and the rules that make a resumed run continue
*exactly*:

- the epoch, the global step, this epoch's permutation and the position in it, and the
  partial sums of the epoch's loss and metrics;
- the optimizer, scheduler and gradient-scaler states, the History and ``should_stop``;
- the Python, NumPy, torch (and CUDA) generators, and the Trainer's own two generators (data
  order and teacher-forcing coins).

A training step that is interrupted (Ctrl-C lands inside the forward or backward pass) is
rolled back to its start: the torch generator states and the global step are snapshotted
before every step, so the saved checkpoint repeats that step on resume.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from rnnkit.callbacks import Callback
from rnnkit.callbacks.model_checkpoint import LAST_NAME, ModelCheckpoint
from rnnkit.distributed import DistributedContext
from rnnkit.errors import CheckpointError, TrainingDivergedError
from rnnkit.io._atomic import atomic_save
from rnnkit.io.checkpoint import check_compatible, load_checkpoint, make_checkpoint
from rnnkit.tasks import Parts
from rnnkit.training._rng import capture_rng, restore_rng, seed_everything
from rnnkit.training._totals import EpochTotals
from rnnkit.training.history import History

__all__ = ["STATE_VERSION", "TrainerState"]

logger = logging.getLogger("rnnkit")

STATE_VERSION = 1
"""Version of the layout :meth:`TrainerState.state_dict` returns."""

_KEYS = (
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


@dataclass
class _StepSnapshot:
    """What a training step changes before it completes, captured at its start."""

    global_step: int
    torch_rng: Tensor
    cuda_rng: Tensor | None
    teacher_rng: Tensor
    skipped: int


class TrainerState:
    """Run state of a :class:`rnnkit.Trainer` and its checkpointing (a base class).

    Attributes are documented on :class:`rnnkit.Trainer`.
    """

    if TYPE_CHECKING:  # set by rnnkit.Trainer before this __init__; for type checkers only
        batch_size: int
        callbacks: list[Callback]
        default_root_dir: Path
        device: torch.device
        distributed: DistributedContext
        seed: int | None
        on_nan: str

    def __init__(self) -> None:
        self.model: nn.Module | None = None
        self.train_model: nn.Module | None = None
        self._pending_state: dict[str, Any] | None = None
        self.interrupted = False
        self.interrupt_checkpoint: Path | None = None
        self._reset_run()

    def _reset_run(self) -> None:
        """Forget the previous run: a fresh History, step counters and generators."""
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.scaler: torch.amp.GradScaler | None = None
        self.history = History()
        self.epoch = 0
        self.global_step = 0
        self.should_stop = False
        self.last_train_metrics: dict[str, float] = {}
        self.last_val_metrics: dict[str, float] = {}
        self.logged_metrics: dict[str, float] = {}
        self.skipped_batches = 0
        self.num_training_batches: int | None = None
        self._reset_epoch_state()
        self._shuffle_gen = torch.Generator()
        self._teacher_gen = torch.Generator()
        self._resume_slot: dict[str, Any] | None = None
        self._snapshot: _StepSnapshot | None = None
        self._first_bad = torch.full((), -1, dtype=torch.int64, device=self.device)
        self._batch_idx = 0
        self._filler = False
        self._parts: Parts = []
        self._ratio = 1.0
        self._logged_upto = 0

    def _reset_epoch_state(self) -> None:
        self._order: Tensor | None = None
        self._position = 0
        self._totals = EpochTotals()
        self._epoch_finished = False

    # -- seeding ----------------------------------------------------------------------------

    def _seed_run(self) -> None:
        """Seed a fresh run: the global generators (with ``seed``) and the Trainer's own.

        Under DDP every process takes rank 0's base seed: all draw the same data order.
        """
        if self.seed is not None:
            seed_everything(self.seed)
            base = self.seed
        else:
            base = int(torch.randint(0, 2**62, (1,)).item())
        base = self.distributed.shared_seed(base)
        self._shuffle_gen.manual_seed(base)
        self._teacher_gen.manual_seed(base + 1)

    # -- the step snapshot ------------------------------------------------------------------

    def _begin_step(self) -> None:
        """Snapshot what a training step changes, so an interrupt can roll it back."""
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        self._snapshot = _StepSnapshot(
            self.global_step,
            torch.get_rng_state(),
            cuda,
            self._teacher_gen.get_state(),
            self.skipped_batches,
        )

    def _end_step(self) -> None:
        self._snapshot = None

    # -- state_dict -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint holds besides the model, as plain types and tensors.

        Taken in the middle of a training step (an interrupt), it describes the state at the
        step's start, so that a resumed run repeats the step.

        Returns:
            A dict with ``"version"``, ``"epoch"`` and ``"position"`` (where to resume:
            batches done in that epoch), ``"global_step"``, ``"permutation"`` (this epoch's
            order or ``None``), ``"totals"`` (the epoch's partial sums), ``"optimizer"``,
            ``"scheduler"``, ``"scaler"``, ``"history"``, ``"rng"``, ``"should_stop"``,
            ``"skipped_batches"``, ``"batch_size"`` and ``"world_size"``. Under DDP it is
            this process's view: rank 0's is the one saved.
        """
        snap = self._snapshot
        finished = self._epoch_finished
        return {
            "version": STATE_VERSION,
            "epoch": self.epoch + 1 if finished else self.epoch,
            "position": 0 if finished else self._position,
            "global_step": self.global_step if snap is None else snap.global_step,
            "permutation": None if finished or self._order is None else self._order.clone(),
            "totals": None if finished else self._totals.state_dict(),
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "scaler": self._scaler_state(),
            "history": self.history.state_dict(),
            "rng": self._rng_state(snap),
            "should_stop": bool(self.should_stop),
            "skipped_batches": self.skipped_batches if snap is None else snap.skipped,
            "batch_size": self.batch_size,
            "world_size": self.distributed.world_size,
        }

    def _scaler_state(self) -> dict[str, Any] | None:
        if self.scaler is None or not self.scaler.is_enabled():
            return None
        return dict(self.scaler.state_dict())

    def _rng_state(self, snap: _StepSnapshot | None) -> dict[str, Any]:
        state = capture_rng()
        state["shuffle"] = self._shuffle_gen.get_state()
        state["teacher"] = self._teacher_gen.get_state()
        if snap is not None:
            state["torch"], state["teacher"] = snap.torch_rng, snap.teacher_rng
            if snap.cuda_rng is not None and "cuda" in state:
                state["cuda"][self.device.index or 0] = snap.cuda_rng
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` at the start of the next :meth:`~rnnkit.Trainer.fit`.

        The optimizer and scheduler exist only once ``fit`` builds them, so the state is kept
        and applied then (``fit(resume_from=...)`` does this for you).

        Raises:
            rnnkit.errors.CheckpointError: The state lacks keys or has a newer version.
        """
        missing = [key for key in _KEYS if key not in state]
        if missing:
            raise CheckpointError(
                f"Expected a Trainer state with keys {list(_KEYS)}, but {missing} are missing. "
                "Hint: pass what Trainer.state_dict() returned (checkpoint['trainer'])."
            )
        if int(state["version"]) > STATE_VERSION:
            raise CheckpointError(
                f"Expected a Trainer state of version <= {STATE_VERSION}, but got version "
                f"{state['version']}. Hint: upgrade rnnkit to resume this run."
            )
        self._pending_state = dict(state)

    def _apply_state(self, state: Mapping[str, Any]) -> None:
        """Put a :meth:`state_dict` into the freshly built optimizer, scheduler, History."""
        self._check_resume_layout(state)
        self._load_optimizers(state)
        self.history.load_state_dict(state["history"])
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        self.should_stop = bool(state["should_stop"])
        self.skipped_batches = int(state["skipped_batches"])
        if int(state["position"]) > 0 or state["permutation"] is not None:
            self._resume_slot = {
                k: state[k] for k in ("epoch", "position", "permutation", "totals")
            }
        self._restore_rng(state["rng"])

    def _check_resume_layout(self, state: Mapping[str, Any]) -> None:
        """In the middle of an epoch, the batch size and the world size must be the saved ones."""
        if int(state["position"]) == 0:
            return
        saved = int(state["batch_size"])
        if saved != self.batch_size:
            raise CheckpointError(
                f"Expected batch_size = {saved} to resume in the middle of an epoch (the "
                f"position counts batches of that size), but the Trainer has batch_size = "
                f"{self.batch_size}. Hint: resume with Trainer(batch_size={saved}, ...)."
            )
        processes, world_size = int(state["world_size"]), self.distributed.world_size
        if processes != world_size:
            raise CheckpointError(
                f"Expected {processes} process(es) to resume in the middle of an epoch (the "
                f"position counts global batches of batch_size x {processes}), but this run "
                f"has {world_size}. Hint: relaunch with `torchrun --nproc-per-node {processes}` "
                "(or plain `python` for 1), or resume from a checkpoint saved at an epoch's end."
            )

    def _load_optimizers(self, state: Mapping[str, Any]) -> None:
        if state["optimizer"] is not None and self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if state["scheduler"] is not None:
            if self.scheduler is None:
                raise CheckpointError(
                    "Expected a Trainer with a `scheduler` to resume this checkpoint, which "
                    "holds a scheduler's state, but it has none. Hint: pass the same "
                    "scheduler= as the run that wrote it."
                )
            self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"] is not None and self.scaler is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])

    def _restore_rng(self, rng: Mapping[str, Any]) -> None:
        restore_rng(dict(rng))
        self._shuffle_gen.set_state(rng["shuffle"])
        self._teacher_gen.set_state(rng["teacher"])

    def _take_resume_slot(self, epoch: int) -> bool:
        """Continue a saved, unfinished epoch if it is ``epoch``; True when it was.

        The saved partial sums are rank 0's: under DDP the other processes start from zero
        (they would count rank 0's share again).
        """
        slot, self._resume_slot = self._resume_slot, None
        if slot is None or int(slot["epoch"]) != epoch:
            return False
        self._order = slot["permutation"]
        self._position = int(slot["position"])
        if slot["totals"] is not None and self.distributed.is_global_zero:
            self._totals.load_state_dict(slot["totals"], self.device)
        return True

    # -- callbacks' states and checkpoint files ---------------------------------------------

    def _callback_keys(self) -> list[str]:
        names = [type(cb).__name__ for cb in self.callbacks]
        totals, seen = Counter(names), Counter[str]()
        keys = []
        for name in names:
            keys.append(name if totals[name] == 1 else f"{name}_{seen[name]}")
            seen[name] += 1
        return keys

    def callback_states(self) -> dict[str, Any]:
        """``{key: callback.state_dict()}`` for the callbacks with state.

        The key is the class name, with ``_0``, ``_1``, ... appended when a class repeats.
        """
        states = {}
        for key, callback in zip(self._callback_keys(), self.callbacks, strict=True):
            state = callback.state_dict()
            if state:
                states[key] = state
        return states

    def load_callback_states(self, states: Mapping[str, Any]) -> None:
        """Give each callback its state from :meth:`callback_states` (matched by key)."""
        for key, callback in zip(self._callback_keys(), self.callbacks, strict=True):
            if key in states:
                callback.load_state_dict(states[key])

    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Write a resumable checkpoint of the model and this run, atomically (rank 0 only).

        Under DDP the other processes write nothing (call it on every process or on rank 0).

        Args:
            path: The file; its folder must exist. An existing file is replaced only once the
                new one is completely written.

        Raises:
            RuntimeError: No fit has started (there is no model).
            rnnkit.errors.CheckpointError: The write failed (the previous file stays intact).
        """
        if self.model is None:
            raise RuntimeError("Trainer.save_checkpoint: no model yet; call fit() first.")
        if not self.distributed.is_global_zero:
            return
        checkpoint = make_checkpoint(self.model, self.state_dict(), self.callback_states())
        atomic_save(checkpoint, path)

    def _model_checkpoints(self) -> list[ModelCheckpoint]:
        return [cb for cb in self.callbacks if isinstance(cb, ModelCheckpoint)]

    def _last_candidates(self) -> list[Path]:
        paths: list[Path] = []
        for callback in self._model_checkpoints():
            if callback.last_path is not None:
                paths.append(Path(callback.last_path))
            paths.append(callback.dirpath / LAST_NAME)
        return [*paths, self.default_root_dir / LAST_NAME]

    def resolve_resume_path(self, resume_from: str | os.PathLike[str]) -> Path | None:
        """The file ``resume_from`` names; for ``"last"``, the latest one found, or ``None``."""
        if str(resume_from) != "last":
            return Path(resume_from)
        for path in self._last_candidates():
            if path.is_file():
                return path
        logger.info("rnnkit: resume_from='last' found no checkpoint; training starts afresh.")
        return None

    def _read_resume_checkpoint(
        self, resume_from: str | os.PathLike[str] | None
    ) -> dict[str, Any] | None:
        """Load and check the checkpoint to resume from (``None``: a fresh run).

        Under DDP rank 0 picks the file and every process reads it.

        Raises:
            rnnkit.errors.CheckpointError: The file is missing, corrupt, foreign or mismatched.
        """
        path = None
        if resume_from is not None and self.distributed.is_global_zero:
            path = self.resolve_resume_path(resume_from)
        path = self.distributed.broadcast_object(path)
        if path is None:
            return None
        checkpoint = load_checkpoint(path, map_location="cpu")
        assert self.model is not None
        check_compatible(checkpoint, self.model)
        self.load_state_dict(checkpoint["trainer"])
        return checkpoint

    def _restore_checkpoint(self, checkpoint: Mapping[str, Any] | None) -> None:
        """Apply a resume checkpoint (or a pending state), or seed a fresh run."""
        if checkpoint is not None:
            assert self.model is not None
            self.model.load_state_dict(checkpoint["model"]["state_dict"])
            self.load_callback_states(checkpoint["callbacks"])
        pending, self._pending_state = self._pending_state, None
        if pending is None:
            self._seed_run()
        else:
            self._apply_state(pending)

    # -- interrupts and divergence ----------------------------------------------------------

    def _interrupt_path(self) -> Path:
        checkpoints = self._model_checkpoints()
        folder = checkpoints[0].dirpath if checkpoints else self.default_root_dir
        return folder / LAST_NAME

    def _handle_interrupt(self, exc: KeyboardInterrupt) -> None:
        """Save a resumable checkpoint (rank 0), say how to resume, notify the callbacks."""
        self._check_divergence()
        path = self._interrupt_path()
        if self.distributed.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.save_checkpoint(path)
            self._log_interrupt(path)
        self.interrupted, self.interrupt_checkpoint = True, path
        self._notify_exception(exc)

    def _log_interrupt(self, path: Path) -> None:
        state = self.state_dict()
        logger.warning(
            "rnnkit: training interrupted (KeyboardInterrupt) in epoch %d after %d batches of "
            "it (global step %d). Saved a resumable checkpoint to %r. Resume exactly with "
            "trainer.fit(model, train, val, resume_from=%r) (or resume_from='last').",
            state["epoch"],
            state["position"],
            state["global_step"],
            str(path),
            str(path),
        )

    def _notify_exception(self, exc: BaseException) -> None:
        """Call every callback's ``on_exception``; their own errors never mask ``exc``."""
        for callback in self.callbacks:
            try:
                callback.on_exception(self, exc)
            except Exception as inner:
                note = getattr(exc, "add_note", None)
                if note is not None:
                    note(f"{type(callback).__name__}.on_exception raised {inner!r}")

    def _note_loss(self, loss: Tensor, sync: bool) -> bool:
        """Check the loss is finite; False when the update must be skipped.

        With ``sync`` the check reads the value now (the CPU, or ``on_nan="skip"``); otherwise
        it records the first non-finite step on the device, read at the logging interval.

        Raises:
            rnnkit.errors.TrainingDivergedError: A non-finite loss with ``on_nan="raise"``.
        """
        if not sync:
            bad = ~torch.isfinite(loss.detach()) & (self._first_bad < 0)
            self._first_bad = torch.where(bad, self.global_step, self._first_bad)
            return True
        finite = math.isfinite(float(loss.detach()))  # one read: cheaper than isfinite()
        if self.on_nan == "skip":  # under DDP all processes skip, or none (equal steps)
            finite = not self.distributed.any_rank(not finite)
        if finite:
            return True
        if self.on_nan == "raise":
            raise self._diverged(float(loss.detach()), self.global_step)
        self.skipped_batches += 1
        return False

    def _check_divergence(self) -> None:
        """Raise for a non-finite loss recorded on the device (a host synchronisation)."""
        step = int(self._first_bad.item())
        if step >= 0:
            raise self._diverged(math.nan, step)

    def _diverged(self, value: float, step: int) -> TrainingDivergedError:
        kept = [path for path in self._last_candidates()[:-1] if path.is_file()]
        where = f" The latest checkpoint written before it: {str(kept[0])!r}." if kept else ""
        what = "non-finite" if math.isnan(value) and step != self.global_step else repr(value)
        return TrainingDivergedError(
            f"The training loss became {what} at epoch {self.epoch}, step {step} (batch "
            f"{self._batch_idx} of the epoch). Training stopped; checkpoints written before "
            f"it are intact.{where} Hint: lower the learning rate, set grad_clip_norm=1.0, "
            "check the data for extreme values, or pass on_nan='skip' to skip such batches.",
            epoch=self.epoch,
            step=step,
        )
