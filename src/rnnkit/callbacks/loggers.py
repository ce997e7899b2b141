"""Loggers: callbacks that write a fit's metrics to files as it runs.

- :class:`CSVLogger`: one row per epoch in a CSV file, the same records as the
  :class:`~rnnkit.History`; it stays exactly in step with a resumed run.
- :class:`TensorBoardLogger`: TensorBoard event files (through torch's
  ``torch.utils.tensorboard.SummaryWriter``, the ``tensorboard`` extra): the
  epoch metrics, the learning rate and the training loss at the Trainer's logging interval.

Under DDP only rank 0 writes.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rnnkit.callbacks._base import Callback

__all__ = ["CSVLogger", "TensorBoardLogger"]


def _writes(trainer: Any) -> bool:
    """Whether this process writes files: rank 0 under DDP, or the only process."""
    return bool(getattr(trainer, "is_global_zero", True))


def _format(value: float | None) -> str:
    """A value as CSV text that reads back exactly (``repr`` round-trips a float)."""
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return repr(float(value))


class CSVLogger(Callback):
    """Write one row per epoch to a CSV file: the epoch's logs, as the History records them.

    The columns are the log keys in the order they first appear (``epoch`` first), e.g.
    ``epoch, loss, accuracy, val_loss, val_accuracy, lr, time``; a key that appears only in a
    later epoch adds a column (the file is rewritten with it; earlier rows leave it empty).
    Values are written so that they read back exactly (``float(text)`` gives the logged
    number). Each row is appended and the file closed at the end of its epoch, so it can be
    read while training runs.

    The file always matches the run's :class:`~rnnkit.History`:

    - a fresh fit starts a new file (an existing one is replaced when the first epoch starts,
      so a fit refused at its start leaves it as it was);
    - a resumed fit (``Trainer.fit(..., resume_from=...)``) rewrites the file from the
      History restored from the checkpoint, then appends: rows that a crashed run wrote after
      that checkpoint are dropped, and no epoch is missing or written twice;
    - entries that callbacks after this one add to an epoch's logs are taken into its row
      when the next epoch starts (or the fit ends).

    Under DDP only rank 0 writes.

    Args:
        path: The CSV file; its folder is created when the fit starts.

    Attributes:
        path: The CSV file.
        rows: The rows of the current fit, as written (one dict per epoch).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, float]] = []
        self._columns: list[str] = []
        self._written = False

    def on_fit_start(self, trainer: Any) -> None:
        """Take the rows from the trainer's History (none for a fresh fit); make the folder.

        The file is written when the first epoch starts: another callback may still refuse
        the fit in its ``on_fit_start``, and the file of the run before must then stay.
        """
        if not _writes(trainer):
            return
        self.rows = [dict(record) for record in getattr(trainer, "history", [])]
        self._columns = []
        self._add_columns(self.rows)
        self._written = False
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        """Start the file (first epoch), or take the previous epoch's final record into its row."""
        if _writes(trainer):
            self._start_or_catch_up(trainer)

    def _start_or_catch_up(self, trainer: Any) -> None:
        if not self._written:
            self._written = True
            self._rewrite()
        self._catch_up(trainer)

    def log_keys(self, trainer: Any) -> Sequence[str]:
        """None: it reads the epoch logs without adding to them."""
        return ()

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        """Write the epoch's row."""
        if not _writes(trainer):
            return
        row = dict(logs)
        self.rows.append(row)
        if self._add_columns([row]):
            self._rewrite()
        else:
            self._append(row)

    def on_fit_end(self, trainer: Any) -> None:
        """Take the final version of the last epoch's record into its row.

        A fit with no epoch left to run (resumed at ``max_epochs``) writes the file here, so
        it still matches the History.
        """
        if _writes(trainer):
            self._start_or_catch_up(trainer)

    def on_exception(self, trainer: Any, exc: BaseException) -> None:
        """Take the final version of the last epoch's record into its row."""
        if _writes(trainer):
            self._catch_up(trainer)

    def _catch_up(self, trainer: Any) -> None:
        """Replace the last row by the History's record when later callbacks added entries."""
        history = getattr(trainer, "history", None)
        if not self._written or history is None or not self.rows or len(history) != len(self.rows):
            return
        record = dict(history[-1])
        if record != self.rows[-1]:
            self.rows[-1] = record
            self._add_columns([record])
            self._rewrite()

    def _add_columns(self, rows: Iterable[Mapping[str, float]]) -> bool:
        """Add the rows' new keys as columns (``epoch`` first); True when there were any."""
        added = False
        for row in rows:
            for key in sorted(row, key=lambda k: k != "epoch"):  # stable: keeps log order
                if key not in self._columns:
                    self._columns.append(key)
                    added = True
        return added

    def _line(self, row: Mapping[str, float]) -> str:
        return _csv_line([_format(row.get(key)) for key in self._columns])

    def _append(self, row: Mapping[str, float]) -> None:
        with self.path.open("a", encoding="utf-8", newline="") as file:
            file.write(self._line(row))

    def _rewrite(self) -> None:
        """Write header and rows to a temporary file, then replace the CSV with it."""
        header = _csv_line(self._columns) if self._columns else ""
        body = "".join(self._line(row) for row in self.rows)
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(header + body, encoding="utf-8", newline="")
        os.replace(temporary, self.path)  # atomic: a reader never sees half a file


def _csv_line(cells: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


_TENSORBOARD_HINT = (
    "TensorBoardLogger needs the tensorboard package, which is not installed. Install it "
    "with `pip install tensorboard` (rnnkit's `tensorboard` extra)."
)


def _summary_writer_class() -> Any:
    """The ``SummaryWriter`` of torch, or an ImportError that says how to install tensorboard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ImportError(_TENSORBOARD_HINT) from exc
    return SummaryWriter


def _first_lr(trainer: Any) -> float | None:
    """The learning rate of the optimizer's first parameter group, or None."""
    optimizer = getattr(trainer, "optimizer", None)
    return None if optimizer is None else float(optimizer.param_groups[0]["lr"])


class TensorBoardLogger(Callback):
    """Write a fit's metrics as TensorBoard event files; view them with ``tensorboard``.

    Every scalar's step is the trainer's ``global_step`` (optimizer steps), so all curves
    share one x-axis:

    - ``epoch/<key>``: every entry of the epoch logs (``epoch/loss``, ``epoch/val_loss``,
      ``epoch/accuracy``, ``epoch/lr``, ``epoch/time``, ...) at the epoch's end, and
      ``epoch`` itself (0-based), to read steps as epochs;
    - ``step/loss``: the mean training loss over the last ``log_every_n_steps`` batches, as the
      Trainer reads it at that interval (:attr:`rnnkit.Trainer.logged_metrics`: no extra host
      synchronisation), and ``step/lr``: the learning rate that step used.

    A resumed fit opens the writer with ``purge_step`` just after the checkpoint's step, so
    TensorBoard hides what a crashed run logged after the checkpoint and no point is shown
    twice. The writer opens when the first epoch starts, so a fit refused at its start purges
    nothing. The events are flushed at the end of every epoch. Under DDP only rank 0 writes.

    Args:
        log_dir: The folder of the event files (one run in TensorBoard); created when the
            fit starts.
        log_steps: Also log ``step/loss`` and ``step/lr`` at the logging interval.

    Raises:
        ImportError: tensorboard is not installed (the ``tensorboard`` extra).

    Attributes:
        log_dir: The folder of the event files.
        writer: The ``torch.utils.tensorboard.SummaryWriter`` of the running fit
            (``None`` outside a fit and on ranks other than 0).
    """

    def __init__(self, log_dir: str | os.PathLike[str], *, log_steps: bool = True) -> None:
        self._writer_class = _summary_writer_class()  # fail before training, not after
        self.log_dir = Path(log_dir)
        self.log_steps = log_steps
        self.writer: Any = None
        self._last_step = -1
        self._opening: int | None = None  # the fit's starting step, until the writer opens
        self._mid_epoch = False  # whether the fit resumes in the middle of an epoch

    def on_fit_start(self, trainer: Any) -> None:
        """Note where the fit starts; the writer opens with the first epoch (rank 0).

        Another callback may still refuse the fit in its ``on_fit_start``; the run's events
        must then stay unpurged.
        """
        if not _writes(trainer):
            return
        self._opening = int(getattr(trainer, "global_step", 0))
        # A resume in the middle of an epoch re-reads its step's interval: that point is
        # purged and written again, unless an epoch ended at that step (all batches of this
        # one skipped so far), whose metrics stay.
        saved = getattr(getattr(trainer, "run", None), "saved_epoch", None)
        every = getattr(getattr(trainer, "options", None), "log_every_n_steps", 1)
        rereads = saved is not None and saved.rereads_interval(every)  # as the Trainer does
        self._mid_epoch = rereads and self._opening > getattr(saved, "start_step", 0)
        self._last_step = self._opening - 1 if self._mid_epoch else self._opening

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        """Open the writer at the fit's first epoch; a resumed fit purges what came after."""
        self._open()

    def _open(self) -> None:
        step, self._opening = self._opening, None
        if step is None:
            return
        purge = (step if self._mid_epoch else step + 1) if step > 0 else None
        self.writer = self._writer_class(log_dir=str(self.log_dir), purge_step=purge)

    def on_batch_end(self, trainer: Any, batch_idx: int, outputs: Mapping[str, Any]) -> None:
        """Log the loss the trainer read at its last logging interval, once."""
        if self.writer is None or not self.log_steps:
            return
        self._log_interval(trainer)

    def _log_interval(self, trainer: Any) -> None:
        logged = getattr(trainer, "logged_metrics", None) or {}
        if "loss" not in logged or "step" not in logged:
            return
        step = int(logged["step"])
        if step <= self._last_step:
            return
        self._last_step = step
        self.writer.add_scalar("step/loss", float(logged["loss"]), step)
        lr = float(logged["lr"]) if "lr" in logged else _first_lr(trainer)
        if lr is not None:
            self.writer.add_scalar("step/lr", lr, step)

    def log_keys(self, trainer: Any) -> Sequence[str]:
        """None: it reads the epoch logs without adding to them."""
        return ()

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        """Log the epoch's metrics (and the last interval's loss), then flush."""
        if self.writer is None:
            return
        if self.log_steps:
            self._log_interval(trainer)
        step = int(getattr(trainer, "global_step", 0))
        self.writer.add_scalar("epoch", float(epoch), step)
        for key, value in logs.items():
            if key != "epoch":
                self.writer.add_scalar(f"epoch/{key}", float(value), step)
        self.writer.flush()

    def on_fit_end(self, trainer: Any) -> None:
        """Close the writer (opened first, to purge, when no epoch was left to run)."""
        self._open()
        self._close()

    def on_exception(self, trainer: Any, exc: BaseException) -> None:
        """Write the interval the trainer read last (if not yet), then close the writer."""
        if self.writer is not None and self.log_steps:
            self._log_interval(trainer)
        self._close()

    def _close(self) -> None:
        self._opening = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
