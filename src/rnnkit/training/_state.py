"""The run state of a fit: :class:`RunState`, one object with its own ``state_dict``.

It holds everything about *where* a run is, and nothing about *how* it trains:

- the epoch, the global step, this epoch's order, the position in it and the partial sums of
  the epoch's loss and metrics (:class:`~rnnkit.training._totals.EpochTotals`);
- ``should_stop`` and the count of skipped batches;
- the run's own generators (data order, teacher-forcing coins);
- the snapshot taken at the start of every training step, so that a state taken in the middle
  of a step (an interrupt) describes the step's start and a resumed run repeats it.

A saved epoch that was not finished is kept aside (:meth:`RunState.load_state_dict`) and
continued when that epoch starts again (:meth:`RunState.resume_epoch`); a finished one is
saved as the start of the next, so no unfinished work is ever counted twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import Tensor

from rnnkit.errors import CheckpointError
from rnnkit.training._rng import capture_rng, restore_rng
from rnnkit.training._totals import EpochTotals

__all__ = ["RunState", "StepSnapshot"]


@dataclass
class StepSnapshot:
    """What a training step changes before it completes, captured at its start."""

    global_step: int
    skipped_batches: int
    torch_rng: Tensor
    cuda_rng: Tensor | None
    teacher_rng: Tensor


@dataclass
class _SavedEpoch:
    """An unfinished epoch of a loaded state, continued when that epoch starts."""

    epoch: int
    position: int
    order: Tensor | None
    totals: Mapping[str, Any] | None
    lr: float | None
    logged_upto: int = 0
    step_lr: float | None = None
    last_logged: dict[str, float] | None = None
    start_step: int = 0

    def rereads_interval(self, every: int) -> bool:
        """Whether resuming it reads its last step's loss interval again (logged every ``every``).

        A Ctrl-C may have come before that read; the Trainer and its loggers both ask this.
        """
        return self.position > 0 and self.position % every == 0

    def entries(self) -> dict[str, Any]:
        """The epoch's entries of a run state (:meth:`RunState.state_dict`), as copies."""
        return {
            "position": self.position,
            "permutation": None if self.order is None else self.order.clone(),
            "totals": None if self.totals is None else dict(self.totals),
            "epoch_lr": self.lr,
            "logged_upto": self.logged_upto,
            "step_lr": self.step_lr,
            "last_logged": self.last_logged,
            "epoch_start_step": self.start_step,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> _SavedEpoch | None:
        """The unfinished epoch a run state holds, or ``None`` (it starts an epoch afresh).

        Entries absent from older checkpoints, or of the wrong kind, take their defaults.
        """
        if int(state["position"]) == 0 and state["permutation"] is None:
            return None
        return cls(
            int(state["epoch"]),
            int(state["position"]),
            state["permutation"],
            state["totals"],
            _saved_lr(state.get("epoch_lr")),
            _saved_count(state.get("logged_upto")),
            _saved_lr(state.get("step_lr")),
            _saved_numbers(state.get("last_logged")),
            _saved_count(state.get("epoch_start_step")),
        )


@dataclass
class RunState:
    """Where a fit is: epoch, position, order, sums, counters, generators, step snapshot.

    Attributes:
        epoch: The current epoch, 0-based.
        global_step: Optimizer steps taken.
        position: Batches of this epoch done (where a resumed epoch starts).
        order: This epoch's permutation of the sample indices, or ``None`` (stored order).
        epoch_finished: Whether this epoch's work is complete (then a state taken now is the
            start of the next epoch).
        should_stop: Stop after the current epoch.
        skipped_batches: Updates skipped for a non-finite loss.
        teacher_ratio: This epoch's teacher-forcing ratio.
        epoch_lr: The learning rate this epoch started with (the History's ``"lr"``), kept
            across a resume in the middle of the epoch, when a per-step scheduler has moved on.
        step_lr: The learning rate the last optimizer step used, or ``None`` before one.
        last_logged: What the last logging interval of this epoch read (the Trainer's
            ``logged_metrics``), kept so that a resumed epoch can show it again.
        epoch_start_step: The global step this epoch started at.
        logged_upto: The steps of this epoch whose loss was logged already.
        fillers: Under DDP, the indices of this epoch's batches for which this process holds
            a stand-in sample (trained with weight 0, not counted).
        shuffle_gen: The generator of the data order.
        teacher_gen: The generator of the teacher-forcing coins.
        data_signature: Sizes and a fingerprint of the training data, saved so that a
            resume on other data is refused.
        rank_rng: Under DDP, every process's generator states in rank order, gathered at
            an epoch's end and valid until the next step draws (processes that drew
            unequally, e.g. dropout on shards of unequal size, each resume their own; the
            data-order generator, alike on every process and drawn when an epoch starts, is
            taken from ``"rng"``); ``None`` otherwise.

    ``totals`` holds the partial sums of this epoch's loss and metrics; ``snapshot`` is taken
    at the start of a training step and cleared at its end.
    """

    epoch: int = 0
    global_step: int = 0
    position: int = 0
    order: Tensor | None = None
    totals: EpochTotals = field(default_factory=EpochTotals)
    epoch_finished: bool = False
    should_stop: bool = False
    skipped_batches: int = 0
    teacher_ratio: float = 1.0
    epoch_lr: float | None = None
    step_lr: float | None = None
    last_logged: dict[str, float] | None = None
    epoch_start_step: int = 0
    logged_upto: int = 0
    fillers: frozenset[int] = frozenset()
    shuffle_gen: torch.Generator = field(default_factory=torch.Generator)
    teacher_gen: torch.Generator = field(default_factory=torch.Generator)
    snapshot: StepSnapshot | None = None
    saved_epoch: _SavedEpoch | None = None
    data_signature: dict[str, Any] | None = None
    rank_rng: list[dict[str, Any]] | None = None

    # -- the epoch ---------------------------------------------------------------------------

    def reset_epoch(self) -> None:
        """Forget the unfinished work of the epoch: order, position, sums, fillers."""
        self.order = None
        self.position = 0
        self.totals = EpochTotals()
        self.epoch_finished = False
        self.logged_upto = 0
        self.last_logged = None
        self.fillers = frozenset()

    def next_epoch(self) -> None:
        """Move to the next epoch, with nothing of it done yet."""
        self.epoch += 1
        self.reset_epoch()

    def resume_epoch(self, epoch: int, device: torch.device, keep_totals: bool) -> bool:
        """Continue the saved unfinished epoch if it is ``epoch``; True when it was.

        Args:
            epoch: The epoch that starts.
            device: Where the partial sums go.
            keep_totals: Take the saved partial sums (rank 0 only under DDP: the other
                processes would count rank 0's share again).
        """
        saved, self.saved_epoch = self.saved_epoch, None
        if saved is None or saved.epoch != epoch:
            return False
        self.order, self.position = saved.order, saved.position
        self.epoch_lr, self.step_lr = saved.lr, saved.step_lr
        self.last_logged, self.epoch_start_step = saved.last_logged, saved.start_step
        if saved.totals is not None and keep_totals:
            self.totals.load_state_dict(saved.totals, device)
            self.logged_upto = saved.logged_upto  # the next logged interval starts there
        return True

    def is_filler(self, batch_idx: int) -> bool:
        """Whether this process's part of batch ``batch_idx`` is a stand-in (weight 0)."""
        return batch_idx in self.fillers

    # -- the step snapshot -------------------------------------------------------------------

    def begin_step(self, device: torch.device) -> None:
        """Snapshot what a training step changes, so that an interrupt can roll it back."""
        cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        self.rank_rng = None  # the step draws on each process's own generators
        self.snapshot = StepSnapshot(
            self.global_step,
            self.skipped_batches,
            torch.get_rng_state(),
            cuda,
            self.teacher_gen.get_state(),
        )

    def end_step(self, position: int) -> None:
        """Commit a completed step: ``position`` batches of the epoch are done."""
        self.position = position
        self.snapshot = None

    # -- seeding and state_dict --------------------------------------------------------------

    def seed(self, base: int) -> None:
        """Seed the run's own generators from ``base``."""
        self.shuffle_gen.manual_seed(base)
        self.teacher_gen.manual_seed(base + 1)
        self.rank_rng = None

    def state_dict(self, device: torch.device) -> dict[str, Any]:
        """The run state as plain types and tensors (at the step's start within a step).

        Returns:
            ``"epoch"`` and ``"position"`` (where to resume), ``"global_step"``,
            ``"permutation"``, ``"totals"``, ``"should_stop"``, ``"skipped_batches"`` and
            ``"rng"`` (the global generators' and the run's own), ``"data"`` (the
            training data's signature) and ``"epoch_lr"`` (the rate an unfinished epoch
            started with).
        """
        snap = self.snapshot
        return {
            "epoch": self.epoch + 1 if self.epoch_finished else self.epoch,
            "global_step": self.global_step if snap is None else snap.global_step,
            "should_stop": bool(self.should_stop),
            "skipped_batches": self.skipped_batches if snap is None else snap.skipped_batches,
            "rng": self.rng_state(device),
            "data": None if self.data_signature is None else dict(self.data_signature),
            "rank_rng": self.rank_rng,
            **(self._kept_aside() or self._progress()).entries(),
        }

    def has_kept_aside_epoch(self) -> bool:
        """Whether a loaded unfinished epoch waits to be continued as the current epoch.

        A stop asked for in the middle of an epoch ends the fit after that epoch; a run
        interrupted and resumed there still finishes it.
        """
        saved = self.saved_epoch
        return saved is not None and saved.epoch == self.epoch

    def _kept_aside(self) -> _SavedEpoch | None:
        """A loaded unfinished epoch not yet continued (a stop before it started), as saved."""
        if not self.has_kept_aside_epoch() or self.epoch_finished:
            return None
        return self.saved_epoch

    def _progress(self) -> _SavedEpoch:
        """This epoch's progress; a finished epoch's is the next one's start."""
        if self.epoch_finished:
            return _SavedEpoch(self.epoch + 1, 0, None, None, None, start_step=self.global_step)
        return _SavedEpoch(
            self.epoch,
            self.position,
            self.order,
            self.totals.state_dict(),
            self.epoch_lr,
            self.logged_upto,
            self.step_lr,
            self.last_logged,
            self.epoch_start_step,
        )

    def rng_state(self, device: torch.device) -> dict[str, Any]:
        """This process's generator states, as :meth:`state_dict` saves them under ``"rng"``."""
        state = capture_rng()
        state["shuffle"] = self.shuffle_gen.get_state()
        state["teacher"] = self.teacher_gen.get_state()
        snap = self.snapshot
        if snap is not None:
            state["torch"], state["teacher"] = snap.torch_rng, snap.teacher_rng
            if snap.cuda_rng is not None and "cuda" in state:
                state["cuda"][device.index or 0] = snap.cuda_rng
        return state

    def load_state_dict(self, state: Mapping[str, Any], rank: int = 0) -> None:
        """Restore a :meth:`state_dict`; an unfinished epoch is continued when it starts.

        ``rank``: this process's; it takes its own saved generator states where the state
        holds them for it (``"rank_rng"``), else rank 0's (``"rng"``).
        """
        self.reset_epoch()
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        self.should_stop = bool(state["should_stop"])
        self.skipped_batches = int(state["skipped_batches"])
        self.saved_epoch = _SavedEpoch.from_state(state)
        rng = own_rng(state, rank)
        restore_rng(dict(rng))
        self.rank_rng = state.get("rank_rng")  # each process now holds its saved states
        self.shuffle_gen.set_state(rng["shuffle"])
        self.teacher_gen.set_state(rng["teacher"])


def own_rng(state: Mapping[str, Any], rank: int) -> Mapping[str, Any]:
    """The generator states of ``rank`` in a run state: its own if saved, else rank 0's.

    Raises:
        rnnkit.errors.CheckpointError: ``"rank_rng"`` is there but is not a list of states
            laid out as ``"rng"`` is.
    """
    ranks = state.get("rank_rng")  # absent from one-process and older checkpoints
    if ranks is None:
        return cast("Mapping[str, Any]", state["rng"])
    keys = {"python", "numpy", "torch", "shuffle", "teacher"}  # "cuda" only where initialised
    if not isinstance(ranks, list) or not all(
        isinstance(r, dict) and keys <= set(r) for r in ranks
    ):
        raise CheckpointError(
            "Expected the run state's 'rank_rng' to be a list of generator states laid out as "
            "its 'rng', but it is not. Hint: the checkpoint is damaged; resume from another."
        )
    if rank >= len(ranks):
        return cast("Mapping[str, Any]", state["rng"])
    # the data order's generator is alike on every process and may have drawn since the gather
    return {**ranks[rank], "shuffle": state["rng"]["shuffle"]}


def _saved_numbers(value: object) -> dict[str, float] | None:
    """A saved ``{name: number}`` record, or ``None`` for anything else."""
    if not isinstance(value, dict):
        return None
    if not all(isinstance(k, str) and type(v) in (int, float) for k, v in value.items()):
        return None
    return {k: float(v) for k, v in value.items()}


def _saved_count(value: object) -> int:
    """A saved epoch's logged steps, if a count (anything else, or absent, is 0)."""
    return value if type(value) is int and value >= 0 else 0


def _saved_lr(value: object) -> float | None:
    """A saved epoch's starting rate, if it is a finite number (anything else is ignored)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)
