"""Early stopping: end the fit when a monitored value stops improving, and keep its best weights."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from torch import Tensor, nn

from rnnkit._validate import check_int
from rnnkit.callbacks._base import Callback
from rnnkit.callbacks._log_keys import check_auto_mode, check_log_keys
from rnnkit.metrics import resolve_mode

__all__ = ["EarlyStopping"]


def _copy_weights(model: nn.Module) -> dict[str, Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


class EarlyStopping(Callback):
    """Stop training when a monitored metric stops improving; restore the best weights.

    After each epoch the value of ``monitor`` in the epoch logs is compared with the best so
    far. An epoch improves when the value beats the best by more than ``min_delta``; after
    ``patience`` consecutive epochs without improvement the callback sets
    ``trainer.should_stop``, so training ends after that epoch. A NaN value never improves.

    With ``restore_best_weights`` the model weights of the best epoch are kept (a copy on the
    model's device) and loaded back into the model when the fit ends, whether it stopped early
    or ran all its epochs.

    Args:
        monitor: Key of the epoch logs to watch, e.g. ``"val_loss"`` or ``"val_accuracy"``.
        mode: ``"min"`` when lower is better (losses), ``"max"`` when higher is (accuracy);
            ``"auto"`` (the default) picks it from ``monitor``, see
            :func:`rnnkit.metrics.resolve_mode` (a fit whose own metric disagrees is refused).
        patience: Epochs without improvement to wait before stopping (at least 1).
        min_delta: Smallest change that counts as an improvement (at least 0).
        restore_best_weights: Load the best epoch's weights into the model at the end.
        strict: Raise when ``monitor`` is missing from the logs; when False, skip that epoch.

    Raises:
        TypeError: If ``patience`` is not an int.
        ValueError: If an argument is out of range.

    Attributes:
        best: The best value seen (``inf`` or ``-inf`` before the first epoch).
        best_epoch: The epoch (0-based) of the best value, -1 before the first.
        wait: Consecutive epochs without improvement.
        stopped_epoch: The epoch in which it asked to stop, -1 if it has not.
        best_weights: Copy of the model's ``state_dict`` at the best epoch, or None.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: Literal["min", "max", "auto"] = "auto",
        patience: int = 3,
        min_delta: float = 0.0,
        restore_best_weights: bool = True,
        strict: bool = True,
    ) -> None:
        self.mode = resolve_mode(monitor, mode)  # checks `mode` first
        self._auto = mode == "auto"  # checked against the fit's metrics when it starts
        self.patience = check_int("patience", patience, 1)
        _check_min_delta(min_delta)
        self.monitor = monitor
        self.min_delta = float(min_delta)
        self.restore_best_weights = restore_best_weights
        self.strict = strict
        self.reset()

    def reset(self) -> None:
        """Forget the best value, the counter and the saved weights."""
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = -1
        self.wait = 0
        self.stopped_epoch = -1
        self.best_weights: dict[str, Tensor] | None = None

    def improved(self, value: float) -> bool:
        """Whether ``value`` beats :attr:`best` by more than ``min_delta``."""
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_fit_start(self, trainer: Any) -> None:
        """Check ``monitor``; start afresh unless the trainer resumes a run (``global_step > 0``).

        Raises:
            ValueError: ``monitor`` is a key the epoch logs cannot hold (e.g. ``"val_loss"``
                without validation data); with ``strict=False`` a warning, and such epochs
                are skipped.
        """
        try:
            check_log_keys(trainer, "EarlyStopping", {self.monitor: "monitor"})
        except ValueError as error:
            if self.strict:
                raise
            warnings.warn(f"EarlyStopping(strict=False) skips every epoch: {error}", stacklevel=2)
        if self._auto:
            check_auto_mode(trainer, "EarlyStopping", self.monitor, self.mode)
        if getattr(trainer, "global_step", 0) == 0:
            self.reset()
        _check_weights_fit(self.best_weights, getattr(trainer, "model", None))

    def log_keys(self, trainer: Any) -> Sequence[str]:
        """None: it reads the epoch logs without adding to them."""
        return ()

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        """Compare the monitored value with the best; ask the trainer to stop when patient.

        Raises:
            KeyError: If ``monitor`` is not in ``logs`` and ``strict`` is True.
        """
        value = self._read(logs)
        if value is None:
            return
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = _copy_weights(trainer.model)
            return
        self.wait += 1
        if self.wait >= self.patience:
            trainer.should_stop = True
            self.stopped_epoch = epoch

    def _read(self, logs: Mapping[str, float]) -> float | None:
        if self.monitor in logs:
            return float(logs[self.monitor])
        if not self.strict:
            return None
        raise KeyError(
            f"EarlyStopping monitors {self.monitor!r}, but the epoch logs hold only "
            f"{sorted(logs)}. Hint: validation metrics exist only when fit() gets `val=` data; "
            "monitor a key from the list or pass strict=False."
        )

    def on_fit_end(self, trainer: Any) -> None:
        """Load the best epoch's weights into the model (with ``restore_best_weights``)."""
        if self.restore_best_weights and self.best_weights is not None:
            trainer.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        """Counters, best value and epoch, and the best weights (tensors) or None."""
        weights = None if self.best_weights is None else dict(self.best_weights)
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "best_weights": weights,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`.

        Raises:
            ValueError: If the state monitors another key or mode than this callback, or
                holds values of the wrong kind (numbers, a ``{name: tensor}`` dict of weights).
        """
        _check_state_values(state)
        if (state["monitor"], state["mode"]) != (self.monitor, self.mode):
            raise ValueError(
                f"Expected an EarlyStopping state for monitor={self.monitor!r}, "
                f"mode={self.mode!r}, but got monitor={state['monitor']!r}, "
                f"mode={state['mode']!r}. Hint: resume with the callback configured as before."
            )
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        self.wait, self.stopped_epoch = int(state["wait"]), int(state["stopped_epoch"])
        weights = state["best_weights"]
        self.best_weights = None if weights is None else dict(weights)


def _check_state_values(state: Mapping[str, Any]) -> None:
    """Refuse a damaged state before anything of it is taken (a checkpoint is data)."""
    best, counts = (
        state.get("best"),
        [state.get(k) for k in ("best_epoch", "wait", "stopped_epoch")],
    )
    weights = state.get("best_weights")
    plain = isinstance(best, int | float) and not isinstance(best, bool)
    plain = plain and all(_is_count(v) for v in counts)
    tensors = weights is None or (
        isinstance(weights, Mapping)
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in weights.items())
    )
    if not (plain and tensors):
        raise ValueError(
            "Expected an EarlyStopping state with numbers for best, best_epoch, wait and "
            "stopped_epoch and a {name: tensor} dict (or None) of best weights, but this one "
            "is damaged. Hint: resume from another checkpoint."
        )


def _is_count(value: object) -> bool:
    """A whole number of at least -1 (an epoch, or -1 for none yet), as an int or float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and float(value).is_integer() and value >= -1


def _check_weights_fit(weights: Mapping[str, Tensor] | None, model: object) -> None:
    """Refuse, before training, best weights that the model could not take at the fit's end."""
    if weights is None or not isinstance(model, nn.Module):
        return
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if {k: tuple(v.shape) for k, v in weights.items()} != expected:
        raise ValueError(
            "Expected the EarlyStopping state's best weights to fit the model (the same "
            "names and shapes), but they do not. Hint: resume with the model the run trained."
        )


def _check_min_delta(min_delta: float) -> None:
    if not min_delta >= 0:
        raise ValueError(
            f"Expected `min_delta` to be >= 0, but got {min_delta!r}. Hint: it is the least "
            "change that counts as an improvement, in either mode."
        )
