"""Callbacks: code the Trainer calls at fixed points of a run.

A callback subclasses :class:`Callback` and overrides the hooks it needs; the others do
nothing. The Trainer calls the hooks in this order::

    on_fit_start
      on_epoch_start            (each epoch)
        on_batch_start, on_batch_end   (each training batch)
        on_validation_end       (when there is validation data)
      on_epoch_end
    on_fit_end                  (on_exception instead, when the run raises)

Built in: :class:`~rnnkit.EarlyStopping`, :class:`~rnnkit.ProgressBar`,
:class:`~rnnkit.LearningRateMonitor`, and :class:`~rnnkit.ModelCheckpoint`.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TextIO, TypeGuard

import torch
from torch import Tensor

from rnnkit._validate import check_optional_int, is_int

__all__ = [
    "Callback",
    "LearningRateMonitor",
    "ProgressBar",
]


class Callback:
    """Base class of callbacks; every hook is a no-op until overridden.

    Each hook receives the :class:`~rnnkit.Trainer` running the fit. A callback may
    read its ``model``, ``optimizer``, ``scheduler``, ``history``
    (:class:`~rnnkit.History`), ``epoch`` (0-based, current), ``global_step``,
    ``device``, ``callbacks``, ``is_global_zero`` (True on rank 0 or in a single process),
    ``last_train_metrics`` and ``last_val_metrics`` (``dict[str, float]``),
    ``expected_log_keys`` (set before :meth:`on_fit_start`: the keys the epoch logs will
    hold), and set ``trainer.should_stop = True`` to stop after the current epoch.

    A callback whose :meth:`on_epoch_end` adds keys to the logs declares them in
    :meth:`log_keys`, so that other callbacks can rely on them from the fit's start.

    A callback with state (counters, best scores) overrides :meth:`state_dict` and
    :meth:`load_state_dict`; checkpoints store it under the class name, so a resumed run
    continues where it stopped.
    """

    def on_fit_start(self, trainer: Any) -> None:
        """Called once before the first epoch (also when resuming)."""

    def log_keys(self, trainer: Any) -> Sequence[str] | None:
        """The keys :meth:`on_epoch_end` adds to the epoch logs; ``None``: not known.

        The default: none when :meth:`on_epoch_end` is not overridden, else ``None`` (it
        may add any key). Override it to declare the keys (``()`` for none); it is called
        before :meth:`on_fit_start`, after the optimizer is built.
        """
        return () if type(self).on_epoch_end is Callback.on_epoch_end else None

    def on_fit_end(self, trainer: Any) -> None:
        """Called once after the last epoch, when the fit ends without an exception."""

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        """Called before each epoch; ``epoch`` is 0-based."""

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        """Called after each epoch and its validation.

        Args:
            trainer: The running Trainer.
            epoch: The epoch just finished, 0-based.
            logs: The epoch's training metrics and validation metrics (prefixed ``val_``);
                entries a callback adds are recorded too.
        """

    def on_batch_start(self, trainer: Any, batch_idx: int) -> None:
        """Called before each training batch; ``batch_idx`` counts from 0 in each epoch."""

    def on_batch_end(
        self, trainer: Any, batch_idx: int, outputs: dict[str, Tensor | float]
    ) -> None:
        """Called after each training step with the dict the step returned (e.g. ``"loss"``).

        Values may be tensors still on the device: reading them (``.item()``) every step
        forces a host synchronisation, so read them only every few steps.
        """

    def on_validation_end(self, trainer: Any, metrics: dict[str, float]) -> None:
        """Called after each validation pass with its metrics (not prefixed)."""

    def on_exception(self, trainer: Any, exc: BaseException) -> None:
        """Called when the fit raises, before the exception propagates unchanged."""

    def state_dict(self) -> dict[str, Any]:
        """The callback's state as plain types and tensors; empty for stateless callbacks."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; stateless callbacks ignore it."""


_TQDM_NOTE = (
    "rnnkit: the progress bar needs tqdm, which is not installed; training prints one line per "
    "epoch instead. Install it with `pip install tqdm` (rnnkit's `progress` extra), or pass "
    "progress=False."
)
_tqdm_note_shown = False


def _import_tqdm(notebook: bool = False) -> Any:
    """The ``tqdm`` class (the notebook widget's with ``notebook``), or None when missing.

    A missing tqdm is reported once per process with a warning.
    """
    global _tqdm_note_shown
    try:
        if notebook:
            from tqdm.auto import tqdm
        else:
            from tqdm import tqdm
    except ImportError:
        if not _tqdm_note_shown:
            _tqdm_note_shown = True
            warnings.warn(_TQDM_NOTE, UserWarning, stacklevel=3)
        return None
    return tqdm


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


def _in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (an IPython kernel app is running).

    IPython is only looked up, never imported: a plain script does not pay for it.
    """
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    config = getattr(shell, "config", None)
    return config is not None and "IPKernelApp" in config


_HIDDEN_LOGS = frozenset({"epoch", "time", "lr"})
_LINE_SKIPPED = frozenset({"epoch", "time"})

_Mode = Literal["notebook", "bar", "lines", "off"]


def _planned_epochs(trainer: Any) -> int | None:
    """The epochs the fit will run: one under ``fast_dev_run``, else ``max_epochs``."""
    options = getattr(trainer, "options", None)
    if options is not None and getattr(options, "fast_dev_run", False):
        return 1
    epochs = getattr(trainer, "max_epochs", None)
    return epochs if isinstance(epochs, int) else None


def _epoch_line(epoch: int, max_epochs: int | None, logs: Mapping[str, float]) -> str:
    """The one-line summary of an epoch that :class:`ProgressBar` prints off a terminal.

    Args:
        epoch: The epoch, 0-based (shown 1-based, as the bar shows it).
        max_epochs: The planned number of epochs, or ``None``.
        logs: The epoch logs; ``"time"`` is shown as the duration, every other entry but
            ``"epoch"`` as ``name=value`` with four significant digits.

    Returns:
        E.g. ``"Epoch 3/10 - 1.2s - loss=0.4321 accuracy=0.875 val_loss=0.5 lr=0.001"``.
    """
    head = f"Epoch {epoch + 1}" + (f"/{max_epochs}" if max_epochs else "")
    parts = [head]
    if "time" in logs:
        parts.append(f"{float(logs['time']):.1f}s")
    metrics = " ".join(f"{k}={float(v):.4g}" for k, v in logs.items() if k not in _LINE_SKIPPED)
    if metrics:
        parts.append(metrics)
    return " - ".join(parts)


class ProgressBar(Callback):
    """Show a fit as it runs: a bar where one can be drawn, else a line per epoch.

    Where the output goes decides how the fit is shown (on rank 0 only):

    - in a Jupyter notebook, a notebook progress widget per epoch (tqdm's ``auto`` mode; a
      text bar when ``ipywidgets`` is missing);
    - on a terminal, a tqdm bar per epoch with step, loss and throughput in samples per
      second, ending with the epoch's metrics;
    - anywhere else (a log file, a pipe, CI), one concise line per epoch with the epoch, its
      duration and every metric of the epoch logs, e.g.
      ``Epoch 3/10 - 1.2s - loss=0.4321 accuracy=0.875 val_loss=0.5 lr=0.001``.

    Bars need tqdm (the ``progress`` extra); without it the lines are printed instead, after a
    one-time warning. The bar reads the loss from the device only every
    ``refresh_every_n_steps`` steps, so it adds no per-step host synchronisation; the lines
    read nothing per step. The total per epoch is shown when the trainer exposes
    ``num_training_batches``; samples are counted from the step outputs' ``"batch_size"`` (or
    the trainer's ``batch_size``). ``Trainer(progress=False)`` adds no ProgressBar, so
    nothing is shown.

    Args:
        enabled: False shows nothing.
        file: Stream to draw or print on; default ``sys.stderr`` at the start of the fit (in a
            notebook: the widget). Pass ``sys.stdout`` to send the lines to standard output.
        refresh_every_n_steps: Steps between loss updates of a bar; default the trainer's
            ``log_every_n_steps``, else 50.

    Attributes:
        mode: How the current (or last) fit is shown: ``"notebook"``, ``"bar"``,
            ``"lines"`` or ``"off"`` (decided when the fit starts).
    """

    def __init__(
        self,
        enabled: bool = True,
        *,
        file: TextIO | None = None,
        refresh_every_n_steps: int | None = None,
    ) -> None:
        self.enabled = enabled
        self.file = file
        self.refresh_every_n_steps = check_optional_int(
            "refresh_every_n_steps", refresh_every_n_steps, 1
        )
        self.mode: _Mode = "off"
        self._stream: TextIO = sys.stderr
        self._tqdm: Any = None
        self._bar: Any = None
        self._every = 50
        self._samples = 0
        self._start = self._last = 0.0

    @property
    def active(self) -> bool:
        """Whether a bar (terminal or notebook) draws in the current fit."""
        return self._tqdm is not None

    def on_fit_start(self, trainer: Any) -> None:
        """Decide how to show the fit (:attr:`mode`) and how often to read the loss."""
        stream = self.file if self.file is not None else sys.stderr
        self._stream = stream
        self.mode = self._choose_mode(trainer, stream)
        self._tqdm = None
        if self.mode in ("notebook", "bar"):
            self._tqdm = _import_tqdm(notebook=self.mode == "notebook")
            if self._tqdm is None:
                self.mode = "lines"
        settings = getattr(trainer, "options", trainer)  # rnnkit's Trainer keeps it there
        default_every = getattr(settings, "log_every_n_steps", None) or 50
        self._every = self.refresh_every_n_steps or int(default_every)

    def _choose_mode(self, trainer: Any, stream: TextIO) -> _Mode:
        if not self.enabled or not getattr(trainer, "is_global_zero", True):
            return "off"
        if self.file is None and _in_notebook():
            return "notebook"
        return "bar" if _is_tty(stream) else "lines"

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        """Open the epoch's bar."""
        if self._tqdm is None:
            return
        max_epochs = _planned_epochs(trainer)
        desc = f"Epoch {epoch + 1}" + (f"/{max_epochs}" if max_epochs else "")
        total = getattr(trainer, "num_training_batches", None)
        # Redrawn at most twice a second: every redraw is work for the terminal, which on a
        # small machine competes with training for the cores.
        where = {} if self.mode == "notebook" else {"file": self._stream}
        self._bar = self._tqdm(total=total, desc=desc, unit="batch", mininterval=0.5, **where)
        self._samples, self._start = 0, time.perf_counter()
        self._last = self._start

    def on_batch_end(
        self, trainer: Any, batch_idx: int, outputs: dict[str, Tensor | float]
    ) -> None:
        """Advance the bar; every few steps show the loss and the throughput."""
        if self._bar is None:
            return
        self._samples += _batch_size(trainer, outputs)
        self._last = time.perf_counter()
        self._bar.update(1)
        if (batch_idx + 1) % self._every == 0 and "loss" in outputs:
            postfix = {"loss": f"{_as_float(outputs['loss']):.4g}", **self._throughput()}
            self._bar.set_postfix(postfix, refresh=False)

    def _throughput(self) -> dict[str, str]:
        """Training samples per second so far in the epoch (validation time excluded)."""
        elapsed = self._last - self._start
        if not self._samples or elapsed <= 0:
            return {}
        return {"samples/s": f"{self._samples / elapsed:,.0f}"}

    def log_keys(self, trainer: Any) -> Sequence[str]:
        """None: it reads the epoch logs without adding to them."""
        return ()

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        """Show the epoch's final metrics: on its bar (then closed), or as one line."""
        if self.mode == "lines":
            max_epochs = _planned_epochs(trainer)
            print(_epoch_line(epoch, max_epochs, logs), file=self._stream, flush=True)
            return
        if self._bar is None:
            return
        shown = {k: f"{v:.4g}" for k, v in logs.items() if k not in _HIDDEN_LOGS}
        self._bar.set_postfix({**shown, **self._throughput()}, refresh=True)
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_fit_end(self, trainer: Any) -> None:
        """Close a bar left open."""
        self._close()

    def on_exception(self, trainer: Any, exc: BaseException) -> None:
        """Close the bar so the traceback starts on a clean line."""
        self._close()


def _as_float(value: Tensor | float) -> float:
    return float(value.item()) if isinstance(value, Tensor) else float(value)


def _batch_size(trainer: Any, outputs: Mapping[str, Tensor | float]) -> int:
    size = outputs.get("batch_size", getattr(trainer, "batch_size", 0))
    return int(size) if isinstance(size, int | float) else 0


class LearningRateMonitor(Callback):
    """Record the learning rate of each epoch in the epoch logs and the History.

    The rate is read from the optimizer when the epoch starts, i.e. the rate the epoch trained
    with (a per-step schedule changes it within the epoch; this is its first value). It is
    written as ``logs[key]`` for the first parameter group and ``logs[f"{key}_pg{i}"]`` for
    the others, and, when the trainer already recorded the epoch in its History, into that
    record as well.

    Args:
        key: The log key, default ``"lr"``.
    """

    def __init__(self, key: str = "lr") -> None:
        self.key = key
        self._lrs: dict[str, float] = {}
        self._epoch: int | None = None  # the epoch ``_lrs`` were read at
        self._resumed_epoch: int | None = None  # set by load_state_dict, used once

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        """Read the learning rates the epoch will train with (kept when it is resumed)."""
        resumed, self._resumed_epoch = self._resumed_epoch, None
        if epoch == resumed:  # an epoch resumed midway: a per-step schedule moved on
            return
        optimizer = getattr(trainer, "optimizer", None)
        self._lrs = {} if optimizer is None else self.read(optimizer)
        self._epoch = epoch

    def state_dict(self) -> dict[str, Any]:
        """The rates read at the start of the current epoch, and that epoch."""
        return {"epoch": self._epoch, "lrs": dict(self._lrs)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (a checkpoint's values are checked, not trusted)."""
        epoch, lrs = state.get("epoch"), state.get("lrs")
        if not (epoch is None or is_int(epoch)) or not _is_rate_map(lrs):
            raise ValueError(
                f"Expected a LearningRateMonitor state {{'epoch': int | None, 'lrs': "
                f"{{str: finite float}}}}, but got {dict(state)!r}. Hint: resume from a "
                "checkpoint rnnkit wrote; a damaged or edited one cannot be trusted."
            )
        self._epoch = self._resumed_epoch = None if epoch is None else int(epoch)
        self._lrs = {str(k): float(v) for k, v in lrs.items()}

    def read(self, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """The current learning rate of each parameter group, keyed as they are logged."""
        lrs = [float(group["lr"]) for group in optimizer.param_groups]
        return {self.key if i == 0 else f"{self.key}_pg{i}": lr for i, lr in enumerate(lrs)}

    def log_keys(self, trainer: Any) -> Sequence[str]:
        """``key``, and ``f"{key}_pg{i}"`` for every further parameter group."""
        optimizer = getattr(trainer, "optimizer", None)
        return [self.key] if optimizer is None else list(self.read(optimizer))

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        """Write the rates into ``logs`` and the History's record of this epoch."""
        logs.update(self._lrs)
        history = getattr(trainer, "history", None)
        if history is None or len(history) == 0 or not self._lrs:
            return
        if history[-1].get("epoch", math.nan) == logs.get("epoch", epoch):
            history.update_last(self._lrs)


def _is_rate_map(value: object) -> TypeGuard[Mapping[str, float]]:
    """Whether ``value`` is a mapping of names to finite numbers (saved learning rates)."""
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, float) and math.isfinite(v) for k, v in value.items()
    )
