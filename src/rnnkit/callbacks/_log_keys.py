"""The keys a fit's epoch logs will hold, known at fit start: :class:`LogKeys`.

The :class:`~rnnkit.Trainer` sets ``trainer.expected_log_keys`` before ``on_fit_start``; a
callback that needs a key (a ``monitor``, a file name field) checks it there with
:func:`check_log_keys`, so that a key that never comes is reported before the first epoch,
not after it.

The rule: a key is *expected* when the Trainer's own loop writes it (``"epoch"``, ``"lr"``,
``"time"``, ``"loss"`` and each metric's name; their ``"val_"`` versions, and
``"val_rollout_mse"`` with a ``rollout_horizon``, only when ``fit`` gets validation data;
``"teacher_forcing"`` and ``"skipped_batches"`` when those options are on) or when a
callback declares it in :meth:`~rnnkit.Callback.log_keys`. The list is *complete* when
nothing else can add a key: no overridden training or evaluation step, no task defined
outside rnnkit, and no callback whose ``on_epoch_end`` may write keys it does not declare.
A key outside a complete list cannot appear, and is refused; outside an incomplete one it
only may not appear, and gets a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rnnkit.metrics import Metric, resolve_mode

__all__ = ["LogKeys", "check_auto_mode", "check_log_keys", "fit_metrics"]


@dataclass(frozen=True)
class LogKeys:
    """The keys a fit's epoch logs will hold.

    Attributes:
        keys: The keys the Trainer's loop writes plus those callbacks declare.
        complete: Whether nothing else can add a key (see the module's rule).
        has_val: Whether the fit has validation data (``"val_"`` keys come from it).
    """

    keys: frozenset[str]
    complete: bool
    has_val: bool


def fit_metrics(trainer: Any) -> tuple[Metric, ...]:
    """The metrics of the fit that is starting (a user's :class:`Metric` objects among them).

    :func:`check_auto_mode` compares their ``higher_is_better`` with a callback's
    ``mode="auto"``; a trainer without a fit yet has none.
    """
    try:
        task = trainer.task_of_fit
    except (AttributeError, RuntimeError):
        return ()
    return tuple(m for m in getattr(task, "metrics", ()) if isinstance(m, Metric))


def check_auto_mode(trainer: Any, owner: str, monitor: str, mode: str) -> None:
    """Refuse ``mode="auto"`` (resolved to ``mode`` from the name) that a fit's metric contradicts.

    A :class:`~rnnkit.metrics.Metric` of the fit named like ``monitor`` whose
    ``higher_is_better`` says otherwise would be watched the wrong way without a word.

    Raises:
        ValueError: The fit's metric goes the other way; raised before the first epoch.
    """
    wanted = resolve_mode(monitor, "auto", fit_metrics(trainer))
    if wanted == mode:
        return
    direction = "higher" if wanted == "max" else "lower"
    raise ValueError(
        f"Expected {owner}'s mode='auto' to watch {monitor!r} as the fit's metric of that name "
        f"says ({direction} is better: mode={wanted!r}), but the name alone gives "
        f"mode={mode!r}. Hint: pass mode={wanted!r} to the {owner}."
    )


def check_log_keys(trainer: Any, owner: str, wanted: Mapping[str, str]) -> None:
    """Refuse (or warn about) keys ``owner`` needs that the fit's epoch logs will not hold.

    Args:
        trainer: The Trainer, with ``expected_log_keys`` (nothing is checked without it).
        owner: The callback, for the message (``"ModelCheckpoint"``).
        wanted: Each needed key, with the argument that names it (``"monitor"``).

    Raises:
        ValueError: A key that cannot appear (the list of expected keys is complete).
    """
    expected = getattr(trainer, "expected_log_keys", None)
    if not isinstance(expected, LogKeys):
        return
    missing = {key: role for key, role in wanted.items() if key not in expected.keys}
    if not missing:
        return
    message = _message(owner, missing, expected)
    if expected.complete:
        raise ValueError(message)
    warnings.warn(message, UserWarning, stacklevel=3)


def _message(owner: str, missing: Mapping[str, str], expected: LogKeys) -> str:
    named = ", ".join(f"`{role}` key {key!r}" for key, role in missing.items())
    val = [key for key in missing if key.startswith("val_")]
    if val and not expected.has_val:
        hint = "validation metrics (val_...) exist only when fit() gets `val=` data; pass it"
    else:
        hint = "use one of the keys listed (a metric needs Trainer(metrics=[...]))"
    certainty = "will not hold" if expected.complete else "may not hold"
    return (
        f"Expected {owner}'s {named} among the keys of the epoch logs, but this fit's logs "
        f"{certainty} {'it' if len(missing) == 1 else 'them'}: they hold "
        f"{sorted(expected.keys)}. Hint: {hint}."
    )
