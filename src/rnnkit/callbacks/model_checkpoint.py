"""The :class:`~rnnkit.ModelCheckpoint` callback: save checkpoints during a fit, keep the best ones.

Importable as ``rnnkit.ModelCheckpoint``, ``rnnkit.callbacks.ModelCheckpoint`` and
``rnnkit.io.checkpoint.ModelCheckpoint``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from rnnkit._validate import check_bool, check_int
from rnnkit.callbacks._base import Callback
from rnnkit.callbacks._checkpoint_names import (
    check_template,
    fill_template,
    log_fields,
    unique_name,
)
from rnnkit.callbacks._log_keys import check_auto_mode, check_log_keys
from rnnkit.errors import CheckpointError, CheckpointWriteError
from rnnkit.io.checkpoint import atomic_copy
from rnnkit.io.run_folder import (
    LAST_NAME,
    MARKER_NAME,
    RunOwner,
    claim_folder,
    folder_has_checkpoints,
    new_run_id,
    read_owner,
    remove_kept_file,
    safe_name,
)
from rnnkit.metrics import resolve_mode

__all__ = ["LAST_NAME", "ModelCheckpoint"]

logger = logging.getLogger("rnnkit")


class ModelCheckpoint(Callback):
    """Save a resumable checkpoint at the end of epochs and keep the ``save_top_k`` best.

    Every ``every_n_epochs`` epochs (on rank 0 only) it calls ``trainer.save_checkpoint(path)``
    (an atomic write of model, optimizer, RNG states, History and callback states):

    - into ``<dirpath>/<filename>`` when the epoch ranks among the ``save_top_k`` best by the
      ``monitor`` value in the epoch logs (with ``monitor=None``: the ``save_top_k`` most
      recent epochs). The file that drops out of the top k is deleted only after the new one
      is safely written. A NaN value ranks worst. A name that is already taken gets a
      ``-v1``, ``-v2``, ... suffix, so a kept file is never overwritten.
    - and, with ``save_last``, into ``<dirpath>/last.ckpt`` (a real file, written atomically,
      no symlink), which ``Trainer.fit(..., resume_from="last")`` loads. With
      ``save_last=False`` that loads the newest ranked file instead (by the epoch and step
      saved in it): a ranked file holds the full state at the end of its epoch too.

    One folder belongs to one run: at the start of a fit the callback writes a small marker
    ``<dirpath>/.rnnkit-run`` naming its run, and refuses a folder that holds another run's
    checkpoints (or that a running process is writing), unless ``overwrite=True``. Resuming
    a run from its own checkpoint continues to own its folder.

    Its bookkeeping (the kept file names, relative to ``dirpath``, and their scores) is part
    of each checkpoint, so a resumed run keeps ranking where it stopped. Names from a
    checkpoint are data: only plain ``.ckpt`` names inside ``dirpath`` are used, and only
    when the folder belongs to the run the checkpoint comes from; it never reads, writes or
    deletes a file outside ``dirpath``, nor deletes a file its run did not write.

    Args:
        dirpath: Folder of the checkpoints; created when the fit starts.
        monitor: Key of the epoch logs to rank by, e.g. ``"val_loss"``; ``None`` keeps the
            most recent epochs.
        mode: ``"min"`` when lower is better (losses), ``"max"`` when higher is (accuracy);
            ``"auto"`` (the default) picks it from ``monitor``, see
            :func:`rnnkit.metrics.resolve_mode` (a fit whose own metric disagrees is refused).
        save_last: Also write ``last.ckpt`` at every save. Without it, ``resume_from="last"``
            continues from the newest ranked file of the run that owns the folder.
        save_top_k: How many ranked files to keep; ``-1`` keeps all, ``0`` none (then only
            ``last.ckpt`` is written).
        every_n_epochs: Save after every n-th epoch (epochs ``n-1, 2n-1, ...``, 0-based).
        filename: A ``str.format`` template for the ranked files, with fields ``epoch``
            (0-based, an int), ``step`` (global step, an int) and any epoch log key (a
            float), e.g. ``"epoch={epoch:03d}-{val_loss:.4f}"``; ``".ckpt"`` is appended when
            missing.
        overwrite: Take over a folder that belongs to another run. Its ranked files are
            left in place (never deleted; a name clash gets a suffix), its ``last.ckpt`` is
            replaced.

    Raises:
        TypeError: An argument has the wrong type (``save_top_k`` or ``every_n_epochs`` not
            an int, ``save_last`` or ``overwrite`` not a bool, ``dirpath``, ``filename`` or
            ``monitor`` not a str).
        ValueError: An argument is out of range, the filename template is malformed, or the
            settings would never save.

    Attributes:
        best_score: The score of ``best_path`` (with ``monitor=None``: its epoch), or ``None``.
    """

    def __init__(
        self,
        dirpath: str | os.PathLike[str],
        monitor: str | None = None,
        mode: Literal["min", "max", "auto"] = "auto",
        save_last: bool = True,
        save_top_k: int = 1,
        every_n_epochs: int = 1,
        filename: str = "epoch={epoch:03d}-step={step}",
        overwrite: bool = False,
    ) -> None:
        _check_types(dirpath, monitor, save_last, overwrite)
        self.mode = resolve_mode(monitor, mode)  # checks `mode` first
        self._auto = mode == "auto"  # checked against the fit's metrics when it starts
        self.save_top_k = check_int("save_top_k", save_top_k, -1)
        self.every_n_epochs = check_int("every_n_epochs", every_n_epochs, 1)
        _check_saves_something(save_last, self.save_top_k)
        self.dirpath = Path(dirpath)
        self.monitor = monitor
        self.save_last = save_last
        self.filename = check_template(filename)
        self.overwrite = overwrite
        self._kept: dict[str, float] = {}  # file name (inside dirpath) -> score
        self._best: str | None = None
        self.best_score: float | None = None
        self._last_written: str | None = None
        self._run_id: str | None = None
        self._restored_run: str | None = None
        self._started = False

    @property
    def best_k(self) -> dict[str, float]:
        """``{path: score}`` of the kept ranked files (paths inside ``dirpath``)."""
        return {str(self.dirpath / name): score for name, score in self._kept.items()}

    @property
    def best_path(self) -> Path | None:
        """The best kept file, or ``None`` before the first save."""
        return None if self._best is None else self.dirpath / self._best

    @property
    def last_path(self) -> Path | None:
        """The latest checkpoint this callback knows of, or ``None`` when there is none yet.

        The more recently written of ``<dirpath>/last.ckpt`` (also one written by an earlier
        process, or by the Trainer on a KeyboardInterrupt) and the latest ranked file this
        callback wrote (or restored from a checkpoint's state); always a regular file
        directly inside ``dirpath``. ``resume_from="last"`` loads it when ``save_last`` is on
        and ``last.ckpt`` exists; otherwise it loads the newest checkpoint of the folder's run
        by the epoch and step saved inside (a new process knows no ranked file yet).
        """
        names = [LAST_NAME, self._last_written]
        existing = [self.dirpath / n for n in names if n is not None and _is_regular(n, self)]
        return max(existing, key=lambda path: path.stat().st_mtime_ns, default=None)

    def on_fit_start(self, trainer: Any) -> None:
        """Create ``dirpath`` and claim it for this run (rank 0), before the first epoch.

        First the ``monitor`` key and the filename template's fields are checked against
        the keys the fit's epoch logs will hold (``trainer.expected_log_keys``; see
        :meth:`rnnkit.Callback.log_keys`): a key that cannot appear is refused, one that
        only a callback of unknown keys could add gets a warning.

        Raises:
            ValueError: ``monitor`` or a filename field is a key the epoch logs cannot hold
                (e.g. ``"val_loss"`` without validation data).
            rnnkit.errors.CheckpointWriteError: The folder cannot be created.
            rnnkit.errors.CheckpointError: The folder belongs to another run (see
                ``overwrite``).
        """
        if self._auto and self.monitor is not None:
            check_auto_mode(trainer, "ModelCheckpoint", self.monitor, self.mode)
        wanted = {field: "filename" for field in log_fields(self.filename)}
        if self.monitor is not None:
            wanted[self.monitor] = "monitor"
        check_log_keys(trainer, "ModelCheckpoint", wanted)
        if not trainer.is_global_zero:  # rank 0 alone ranks and writes: hold no stale ranking
            self._kept, self._last_written = {}, None
            self._update_best()
            return
        self._started = False
        self._start()

    def log_keys(self, trainer: Any) -> Sequence[str]:
        """None: it reads the epoch logs without adding to them."""
        return ()

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        """Save this epoch's checkpoint(s) when it is a save epoch, on rank 0."""
        if not trainer.is_global_zero or (epoch + 1) % self.every_n_epochs:
            return
        if not self._started:
            self._start()
        self._check_still_owner()
        step = int(trainer.global_step)
        written = None
        if self.save_top_k != 0:
            score = self._score(epoch, logs)
            if self._qualifies(score):
                name = fill_template(self.filename, epoch, step, logs)
                written = self._save_ranked(trainer, name, score)
        if self.save_last:
            self._save_last(trainer, written)

    # -- the run folder ----------------------------------------------------------------------

    def _start(self) -> None:
        """Make the folder, then continue the restored run in it or start a new run."""
        self._make_folder()
        restored, self._restored_run = self._restored_run, None
        owner = read_owner(self.dirpath)
        self._started = True
        if restored is not None and owner is not None and owner.run_id == restored:
            self._run_id = restored  # a resume of the run that owns this folder
            claim_folder(self.dirpath, restored, replace=True)  # now written by this process
            return
        self._forget_restored_files()
        self._run_id = new_run_id()
        resumed = restored is not None
        if owner is not None:
            self._take_over(owner, resumed)
            return
        if folder_has_checkpoints(self.dirpath) and not self.overwrite:
            raise self._not_ours("holds checkpoints that no ModelCheckpoint run claims", resumed)
        other = claim_folder(self.dirpath, self._run_id, replace=self.overwrite)
        if other is not None:  # another run claimed it a moment ago
            self._take_over(other, resumed)

    def _take_over(self, owner: RunOwner, resumed: bool) -> None:
        if not self.overwrite:
            if folder_has_checkpoints(self.dirpath):
                raise self._not_ours("holds checkpoints of another run", resumed)
            if owner.is_alive_here():
                raise self._not_ours("is being written by another run (still running)", resumed)
        assert self._run_id is not None
        claim_folder(self.dirpath, self._run_id, replace=True)

    def _not_ours(self, why: str, resumed: bool) -> CheckpointError:
        """The refusal of a folder; a resumed fit is not told to resume (it just did)."""
        self._started = False
        if resumed:
            hint = (
                "the checkpoint this fit resumes is not one of that run's; pass another "
                "`dirpath` (the resumed training then starts a new ranking there)"
            )
        else:
            hint = "pass another `dirpath`; to continue that run, resume it with "
            hint += "fit(..., resume_from='last')"
        return CheckpointError(
            f"Expected ModelCheckpoint's folder {str(self.dirpath)!r} to be new or this "
            f"run's, but it {why}; writing there would overwrite and delete that run's files. "
            f"Hint: {hint}; to take the folder over anyway (its ranked files are kept, "
            f"last.ckpt is replaced), pass ModelCheckpoint(..., overwrite=True)."
        )

    def _check_still_owner(self) -> None:
        owner = read_owner(self.dirpath)
        if owner is None or owner.run_id != self._run_id:
            raise CheckpointError(
                f"Expected ModelCheckpoint's folder {str(self.dirpath)!r} to belong to this "
                f"run, but another run took it over (its marker {MARKER_NAME!r} changed) "
                f"after this fit started. Hint: give each run its own `dirpath`."
            )

    def _forget_restored_files(self) -> None:
        """Drop bookkeeping about files that are not this folder's run's (never delete them)."""
        if self._kept or self._last_written is not None:
            logger.info(
                "rnnkit: ModelCheckpoint starts a new ranking in %r; the files listed in the "
                "resumed checkpoint belong to another folder or run and are left untouched.",
                str(self.dirpath),
            )
        self._kept, self._last_written = {}, None
        self._update_best()

    def _make_folder(self) -> None:
        try:
            self.dirpath.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CheckpointWriteError(
                f"Could not create the checkpoint folder {str(self.dirpath)!r}: {exc}. "
                f"Hint: pass a writable `dirpath` to ModelCheckpoint."
            ) from exc

    # -- ranking -------------------------------------------------------------------------

    def _score(self, epoch: int, logs: Mapping[str, float]) -> float:
        if self.monitor is None:
            return float(epoch)
        if self.monitor not in logs:
            raise KeyError(
                f"ModelCheckpoint monitors {self.monitor!r}, but the epoch logs hold only "
                f"{sorted(logs)}. Hint: validation metrics exist only when fit() gets `val=` "
                f"data; monitor a key from the list, or monitor=None to keep the latest epochs."
            )
        return float(logs[self.monitor])

    def _rank(self, score: float) -> float:
        """Lower is better; NaN ranks worst."""
        if math.isnan(score):
            return math.inf
        return -score if self.monitor is None or self.mode == "max" else score

    def _qualifies(self, score: float) -> bool:
        if self.save_top_k < 0 or len(self._kept) < self.save_top_k:
            return True
        worst = max(self._kept.values(), key=self._rank)
        return self._rank(score) < self._rank(worst)

    def _evict(self, keep: str) -> list[str]:
        """Drop the worst entries beyond ``save_top_k`` (never ``keep``); return their names."""
        if self.save_top_k < 0:
            return []
        ranked = sorted(self._kept, key=lambda name: (name != keep, self._rank(self._kept[name])))
        evicted = ranked[self.save_top_k :]
        for name in evicted:
            del self._kept[name]
        return evicted

    def _update_best(self) -> None:
        if not self._kept:
            self._best, self.best_score = None, None
            return
        self._best = min(self._kept, key=lambda name: self._rank(self._kept[name]))
        self.best_score = self._kept[self._best]

    # -- writing -------------------------------------------------------------------------

    def _save_ranked(self, trainer: Any, name: str, score: float) -> Path:
        name = unique_name(self.dirpath, name, {*self._kept, LAST_NAME})
        before = self.state_dict()
        self._kept[name] = score
        evicted = self._evict(keep=name)
        self._update_best()
        self._last_written = name
        path = self.dirpath / name
        try:
            trainer.save_checkpoint(path)
        except BaseException:
            self._restore(before)
            raise
        for old in evicted:
            remove_kept_file(self.dirpath, old)
        return path

    def _save_last(self, trainer: Any, written: Path | None) -> None:
        last = self.dirpath / LAST_NAME
        if written is None:
            trainer.save_checkpoint(last)
        else:  # the same content: copy the bytes instead of serialising twice
            atomic_copy(written, last)

    # -- state ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The bookkeeping: run id, monitor, mode, kept file names and scores, best and latest.

        File names are relative to ``dirpath``.
        """
        return {
            "run_id": self._run_id,
            "monitor": self.monitor,
            "mode": self.mode,
            "best_k": dict(self._kept),
            "best_path": self._best,
            "best_score": self.best_score,
            "last_written": self._last_written,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s bookkeeping, checking every file name in it.

        A name that is not a plain ``.ckpt`` file name inside ``dirpath`` is ignored with a
        warning. When the state was ranked by another ``monitor`` or ``mode``, its scores
        cannot be compared with new ones: the ranking starts afresh (the old files stay on
        disk). At the start of the fit the kept files are adopted only if ``dirpath``
        belongs to the run the state comes from; otherwise the ranking starts afresh there
        and the listed files are left untouched.
        """
        run_id = state.get("run_id")
        self._restored_run = run_id if isinstance(run_id, str) and run_id else None
        self._run_id, self._started = self._restored_run, False
        self._restore(state)

    def _restore(self, state: Mapping[str, Any]) -> None:
        self._last_written = safe_name(state.get("last_written"), what="last_written")
        same = (state.get("monitor"), state.get("mode")) == (self.monitor, self.mode)
        kept = state.get("best_k", {}) if same else {}
        self._kept = {}
        for key, score in kept.items() if isinstance(kept, Mapping) else []:
            name = safe_name(key, what="a kept file")
            if name is not None and isinstance(score, (int, float)):
                self._kept[name] = float(score)
        self._update_best()


def _is_regular(name: str, callback: ModelCheckpoint) -> bool:
    return (callback.dirpath / name).is_file() and not (callback.dirpath / name).is_symlink()


def _check_types(dirpath: object, monitor: object, save_last: object, overwrite: object) -> None:
    if not isinstance(dirpath, (str, os.PathLike)):
        raise TypeError(
            f"Expected `dirpath` to be a str or os.PathLike (a folder), but got "
            f"{type(dirpath).__name__} {dirpath!r}. Hint: e.g. ModelCheckpoint('runs/mnist')."
        )
    if monitor is not None and not isinstance(monitor, str):
        raise TypeError(
            f"Expected `monitor` to be a str or None (a key of the epoch logs, e.g. "
            f"'val_loss'), but got {type(monitor).__name__} {monitor!r}."
        )
    check_bool("save_last", save_last)
    check_bool("overwrite", overwrite)


def _check_saves_something(save_last: bool, save_top_k: int) -> None:
    if save_top_k == 0 and not save_last:
        raise ValueError(
            "Expected ModelCheckpoint to save something, but save_top_k=0 and save_last=False "
            "save nothing. Hint: set save_last=True or save_top_k >= 1."
        )
