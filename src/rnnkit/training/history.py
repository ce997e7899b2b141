"""The per-epoch record of a training run: :class:`History`.

The Trainer appends one record per epoch, a ``dict[str, float]`` with keys such as ``"epoch"``,
``"loss"``, ``"accuracy"``, ``"val_loss"``, ``"val_accuracy"``, ``"lr"`` and ``"time"``
(validation metrics are prefixed ``val_``). A History indexes by epoch (a record) or by key (a
column), converts to plain lists for JSON or pandas, round-trips through a checkpoint, and
plots its curves to a PNG with the ``plot`` extra (matplotlib).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, overload

from rnnkit.metrics import resolve_mode

__all__ = ["History"]

_PLOT_HINT = (
    "History.plot needs matplotlib, which is not installed. Install it with "
    "`pip install matplotlib` (rnnkit's `plot` extra)."
)


def _record(values: Mapping[Any, Any], what: str) -> dict[str, float]:
    """A plain copy of one record, with its keys and values checked."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if (
            not isinstance(key, str)
            or isinstance(value, bool)
            or not isinstance(value, numbers.Real)
        ):
            raise TypeError(
                f"Expected {what} to map str keys to numbers, but got {key!r}: {value!r} "
                f"({type(value).__name__}). Hint: convert tensors with `.item()` first."
            )
        # plain int and float (a NumPy number would not load with weights_only=True)
        out[key] = int(value) if isinstance(value, numbers.Integral) else float(value)
    return out


class History:
    """Per-epoch metrics of a training run: a list of records, indexable by epoch or by key.

    Args:
        records: Records to start from (copied), oldest first.

    Example:
        >>> h = History([{"epoch": 0, "loss": 0.9}, {"epoch": 1, "loss": 0.5, "val_loss": 0.6}])
        >>> h[-1]["loss"], h["loss"]
        (0.5, [0.9, 0.5])
        >>> h["val_loss"]  # missing entries read as NaN
        [nan, 0.6]
        >>> h.best("loss")["epoch"]
        1
    """

    def __init__(self, records: Iterable[Mapping[str, float]] = ()) -> None:
        self._records: list[dict[str, float]] = []
        for record in records:
            self.append(record)

    def append(self, record: Mapping[str, float]) -> None:
        """Add one epoch's record (copied) at the end.

        Raises:
            TypeError: If a key is not a string or a value is not a number.
        """
        self._records.append(_record(record, "`record`"))

    def update_last(self, values: Mapping[str, float]) -> None:
        """Add or overwrite entries of the latest record (callbacks that log late use this).

        Raises:
            IndexError: If the History is empty.
            TypeError: If a key is not a string or a value is not a number.
        """
        if not self._records:
            raise IndexError(
                "Expected a History with a record to update, but it is empty. Hint: append a "
                "record first."
            )
        self._records[-1].update(_record(values, "`values`"))

    @property
    def keys(self) -> list[str]:
        """Every key that appears in some record, in order of first appearance."""
        return list(dict.fromkeys(key for record in self._records for key in record))

    @overload
    def __getitem__(self, index: int) -> dict[str, float]: ...

    @overload
    def __getitem__(self, index: str) -> list[float]: ...

    def __getitem__(self, index: int | str) -> dict[str, float] | list[float]:
        """A record (a copy) by epoch position, or a column by key (``NaN`` where absent).

        Raises:
            KeyError: If no record has the key.
            IndexError: If the position is out of range.
            TypeError: If ``index`` is neither an int nor a str.
        """
        if isinstance(index, str):
            return self._column(index)
        if isinstance(index, bool) or not hasattr(index, "__index__"):
            raise TypeError(
                f"Expected a History index of type int or str, but got {type(index).__name__}. "
                "Hint: h[-1] is the last record, h['loss'] a column."
            )
        return dict(self._records[index])

    def _column(self, key: str) -> list[float]:
        if not any(key in record for record in self._records):
            raise KeyError(
                f"Expected a key some record holds, but got {key!r}; the keys are {self.keys}. "
                "Hint: validation keys ('val_...') exist only when fit() gets `val=` data."
            )
        return [record.get(key, math.nan) for record in self._records]

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[dict[str, float]]:
        return (dict(record) for record in self._records)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, History) and self._records == other._records

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"History({len(self)} epochs, keys={self.keys})"

    def to_list(self) -> list[dict[str, float]]:
        """The records as a new list of new dicts (JSON-able; ``pandas.DataFrame`` accepts it)."""
        return list(self)

    def state_dict(self) -> dict[str, Any]:
        """The History as plain types (a dict holding a list of dicts of numbers).

        Loadable with ``torch.load(..., weights_only=True)`` and JSON-able.
        """
        return {"records": self.to_list()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the records by those of a :meth:`state_dict`.

        Raises:
            ValueError: If ``state`` has no ``"records"`` list.
            TypeError: If a record is not a mapping of str to numbers.
        """
        records = state.get("records")
        if not isinstance(records, list):
            raise ValueError(
                "Expected a History state with a 'records' list, but got keys "
                f"{sorted(state)}. Hint: pass what History.state_dict() returned."
            )
        self._records = [_record(r, "each record") for r in records]

    def best(self, key: str, mode: Literal["min", "max", "auto"] = "auto") -> dict[str, float]:
        """The record with the lowest (``mode="min"``) or highest (``"max"``) value of ``key``.

        ``"auto"`` (the default) picks the direction from ``key``: highest for accuracies,
        lowest for losses and errors (:func:`rnnkit.metrics.resolve_mode`). Records without
        the key or with a NaN value are skipped; ties go to the earliest.

        Raises:
            KeyError: If no record has a numeric value for ``key``.
            ValueError: If ``mode`` is not ``"min"``, ``"max"`` or ``"auto"``.
        """
        mode = resolve_mode(key, mode)
        valid = [r for r in self._records if not math.isnan(r.get(key, math.nan))]
        if not valid:
            raise KeyError(
                f"Expected a key with a numeric value in some record, but got {key!r}; the keys "
                f"are {self.keys}. Hint: pick one of them (NaN values are skipped)."
            )
        pick = min if mode == "min" else max
        return dict(pick(valid, key=lambda record: record[key]))

    def plot(
        self,
        keys: Sequence[str] | None = None,
        path: str | Path | None = None,
        title: str | None = None,
    ) -> Path:
        """Plot columns against the epoch and save the figure as a PNG.

        Uses matplotlib's Agg renderer directly (no pyplot, no global backend change), so it
        works headless and inside notebooks alike.

        Args:
            keys: Columns to draw, one line each (a single key may be given as a string).
                Default: ``("accuracy", "val_accuracy")`` where present, else
                ``("loss", "val_loss")``.
            path: Where to write the PNG; default ``"history.png"`` in the working directory.
            title: Figure title; default none.

        Returns:
            The path written.

        Raises:
            ImportError: If matplotlib is missing (``pip install matplotlib``).
            KeyError: If a requested key is in no record.
            ValueError: If the History is empty, or ``keys`` is empty.
        """
        if not self._records:
            raise ValueError(
                "Expected a History with records to plot, but it is empty. Hint: train for an "
                "epoch first."
            )
        if isinstance(keys, str):
            keys = (keys,)  # one column, not one per character
        if keys is not None and not keys:
            raise ValueError(
                "Expected `keys` to name at least one column, but got none. Hint: pass "
                "keys=None for the default columns."
            )
        columns = {key: self._column(key) for key in (keys or self._default_plot_keys())}
        figure_cls, canvas_cls = _matplotlib()
        figure = figure_cls(figsize=(6.4, 4.0), dpi=100)
        canvas_cls(figure)
        self._draw(figure.add_subplot(), columns, title)
        out = Path("history.png" if path is None else path)
        figure.savefig(out, format="png")
        return out

    def _default_plot_keys(self) -> tuple[str, ...]:
        for pair in (("accuracy", "val_accuracy"), ("loss", "val_loss")):
            present = tuple(key for key in pair if key in self.keys)
            if present:
                return present
        raise KeyError(
            f"Expected an accuracy or loss column to plot by default, but the keys are "
            f"{self.keys}. Hint: name the columns, e.g. plot(keys=[...])."
        )

    def _draw(self, axes: Any, columns: Mapping[str, list[float]], title: str | None) -> None:
        epochs = self["epoch"] if "epoch" in self.keys else list(range(len(self)))
        for key, values in columns.items():
            axes.plot(epochs, values, marker="o", markersize=3, label=key)
        axes.set_xlabel("epoch")
        axes.grid(visible=True, alpha=0.3)
        axes.legend()
        if title is not None:
            axes.set_title(title)


def _matplotlib() -> tuple[Any, Any]:
    """Return matplotlib's ``Figure`` and Agg canvas classes, imported on first use."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(_PLOT_HINT) from err
    return Figure, FigureCanvasAgg
