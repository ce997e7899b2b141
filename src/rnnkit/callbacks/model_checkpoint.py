"""The :class:`~rnnkit.ModelCheckpoint` callback: save checkpoints during a fit, keep the best ones.

Importable as ``rnnkit.ModelCheckpoint``, ``rnnkit.callbacks.ModelCheckpoint`` and
``rnnkit.io.checkpoint.ModelCheckpoint``.
"""

from __future__ import annotations

import math
import os
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from rnnkit.callbacks._base import Callback
from rnnkit.errors import CheckpointWriteError
from rnnkit.io._atomic import atomic_copy
from rnnkit.metrics import resolve_mode

__all__ = ["ModelCheckpoint"]

LAST_NAME = "last.ckpt"
"""The file name of the checkpoint of the latest epoch, ``<dirpath>/last.ckpt``."""


class ModelCheckpoint(Callback):
    """Save a resumable checkpoint at the end of epochs and keep the ``save_top_k`` best.

    Every ``every_n_epochs`` epochs (on rank 0 only) it calls ``trainer.save_checkpoint(path)``
    (an atomic write of model, optimizer, RNG states, History and callback states):

    - into ``<dirpath>/<filename>`` when the epoch ranks among the ``save_top_k`` best by the
      ``monitor`` value in the epoch logs (with ``monitor=None``: the ``save_top_k`` most
      recent epochs). The file that drops out of the top k is deleted only after the new one
      is safely written. A NaN value ranks worst.
    - and, with ``save_last``, into ``<dirpath>/last.ckpt`` (a real file, written atomically,
      no symlink), which ``Trainer.fit(..., resume_from="last")`` loads.

    Its bookkeeping (the kept files and their scores) is part of each checkpoint, so a
    resumed run keeps ranking where it stopped.

    Args:
        dirpath: Folder of the checkpoints; created when the fit starts.
        monitor: Key of the epoch logs to rank by, e.g. ``"val_loss"``; ``None`` keeps the
            most recent epochs.
        mode: ``"min"`` when lower is better (losses), ``"max"`` when higher is (accuracy);
            ``"auto"`` (the default) picks it from ``monitor``, see
            :func:`rnnkit.metrics.resolve_mode`.
        save_last: Also write ``last.ckpt`` at every save.
        save_top_k: How many ranked files to keep; ``-1`` keeps all, ``0`` none (then only
            ``last.ckpt`` is written).
        every_n_epochs: Save after every n-th epoch (epochs ``n-1, 2n-1, ...``, 0-based).
        filename: A ``str.format`` template for the ranked files, with fields ``epoch``
            (0-based), ``step`` (global step) and any epoch log key, e.g.
            ``"epoch={epoch:03d}-{val_loss:.4f}"``; ``".ckpt"`` is appended when missing.

    Raises:
        ValueError: An argument is out of range, or the settings would never save.

    Attributes:
        best_k: ``{path: score}`` of the kept ranked files.
        best_path: The best kept file, or ``None`` before the first save.
        best_score: Its score (with ``monitor=None``: its epoch), or ``None``.
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
    ) -> None:
        self.mode = resolve_mode(monitor, mode)  # checks `mode` first
        _check_args(save_last, save_top_k, every_n_epochs)
        self.dirpath = Path(dirpath)
        self.monitor = monitor
        self.save_last = save_last
        self.save_top_k = save_top_k
        self.every_n_epochs = every_n_epochs
        self.filename = _check_filename(filename)
        self.best_k: dict[str, float] = {}
        self.best_path: Path | None = None
        self.best_score: float | None = None
        self._last_written: Path | None = None

    @property
    def last_path(self) -> Path | None:
        """The checkpoint ``resume_from="last"`` loads, or ``None`` when there is none yet.

        The more recently written of ``<dirpath>/last.ckpt`` (also one written by an earlier
        process, or by the Trainer on a KeyboardInterrupt) and the latest ranked file this
        callback wrote (or restored from a checkpoint's state).
        """
        candidates = [self.dirpath / LAST_NAME, self._last_written]
        existing = [path for path in candidates if path is not None and path.is_file()]
        return max(existing, key=lambda path: path.stat().st_mtime_ns, default=None)

    def on_fit_start(self, trainer: Any) -> None:
        """Create ``dirpath`` (rank 0), so a bad folder fails before the first epoch."""
        if not trainer.is_global_zero:
            return
        try:
            self.dirpath.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CheckpointWriteError(
                f"Could not create the checkpoint folder {str(self.dirpath)!r}: {exc}. "
                f"Hint: pass a writable `dirpath` to ModelCheckpoint."
            ) from exc

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        """Save this epoch's checkpoint(s) when it is a save epoch, on rank 0."""
        if not trainer.is_global_zero or (epoch + 1) % self.every_n_epochs:
            return
        step = int(trainer.global_step)
        written = None
        if self.save_top_k != 0:
            score = self._score(epoch, logs)
            if self._qualifies(score):
                written = self._save_ranked(trainer, self._path(epoch, step, logs), score)
        if self.save_last:
            self._save_last(trainer, written)

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
        if self.save_top_k < 0 or len(self.best_k) < self.save_top_k:
            return True
        worst = max(self.best_k.values(), key=self._rank)
        return self._rank(score) < self._rank(worst)

    def _evict(self, keep: str) -> list[str]:
        """Drop the worst entries beyond ``save_top_k`` (never ``keep``); return their paths."""
        if self.save_top_k < 0:
            return []
        ranked = sorted(self.best_k, key=lambda path: (path != keep, self._rank(self.best_k[path])))
        evicted = ranked[self.save_top_k :]
        for path in evicted:
            del self.best_k[path]
        return evicted

    def _update_best(self) -> None:
        if not self.best_k:
            self.best_path, self.best_score = None, None
            return
        best = min(self.best_k, key=lambda path: self._rank(self.best_k[path]))
        self.best_path, self.best_score = Path(best), self.best_k[best]

    # -- writing -------------------------------------------------------------------------

    def _path(self, epoch: int, step: int, logs: Mapping[str, float]) -> Path:
        fields = {**{k: float(v) for k, v in logs.items()}, "epoch": epoch, "step": step}
        try:
            name = self.filename.format(**fields)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"ModelCheckpoint could not fill its filename template {self.filename!r} "
                f"({type(exc).__name__}: {exc}); available fields: {sorted(fields)}. "
                f"Hint: use only those names, e.g. 'epoch={{epoch:03d}}'."
            ) from exc
        return self.dirpath / (name if name.endswith(".ckpt") else f"{name}.ckpt")

    def _save_ranked(self, trainer: Any, path: Path, score: float) -> Path:
        before = self.state_dict()
        self.best_k[str(path)] = score
        evicted = self._evict(keep=str(path))
        self._update_best()
        self._last_written = path
        try:
            trainer.save_checkpoint(path)
        except BaseException:
            self.load_state_dict(before)
            raise
        for old in evicted:
            Path(old).unlink(missing_ok=True)
        return path

    def _save_last(self, trainer: Any, written: Path | None) -> None:
        last = self.dirpath / LAST_NAME
        if written is None:
            trainer.save_checkpoint(last)
        else:  # the same content: copy the bytes instead of serialising twice
            atomic_copy(written, last)

    # -- state ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The bookkeeping: monitor, mode, kept files and scores, best and latest file."""
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "best_k": dict(self.best_k),
            "best_path": None if self.best_path is None else str(self.best_path),
            "best_score": self.best_score,
            "last_written": None if self._last_written is None else str(self._last_written),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s bookkeeping.

        When the state was ranked by another ``monitor`` or ``mode``, its scores cannot be
        compared with new ones: the ranking starts afresh (the old files stay on disk).
        """
        last = state.get("last_written")
        self._last_written = None if last is None else Path(last)
        same = (state.get("monitor"), state.get("mode")) == (self.monitor, self.mode)
        self.best_k = {str(k): float(v) for k, v in state.get("best_k", {}).items()} if same else {}
        self._update_best()


def _check_args(save_last: bool, save_top_k: object, every_n_epochs: object) -> None:
    if not _is_int(save_top_k, minimum=-1):
        raise ValueError(
            f"Expected `save_top_k` to be an int >= -1 (-1 keeps all), but got {save_top_k!r}."
        )
    if not _is_int(every_n_epochs, minimum=1):
        raise ValueError(
            f"Expected `every_n_epochs` to be an int >= 1, but got {every_n_epochs!r}."
        )
    if save_top_k == 0 and not save_last:
        raise ValueError(
            "Expected ModelCheckpoint to save something, but save_top_k=0 and save_last=False "
            "save nothing. Hint: set save_last=True or save_top_k >= 1."
        )


def _is_int(value: object, *, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _check_filename(filename: str) -> str:
    try:
        list(string.Formatter().parse(filename))
    except ValueError as exc:
        raise ValueError(
            f"Expected `filename` to be a str.format template, but got {filename!r} ({exc})."
        ) from exc
    name = filename if filename.endswith(".ckpt") else f"{filename}.ckpt"
    if not filename or name == LAST_NAME or "/" in filename:
        raise ValueError(
            f"Expected `filename` to be a file name template other than {LAST_NAME!r} and "
            f"without '/', but got {filename!r}. Hint: e.g. 'epoch={{epoch:03d}}'."
        )
    return filename
