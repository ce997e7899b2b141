"""`from_dataframe`: a long pandas table, one row per (series, step), as a `SequenceDataset`.

The long format is the one most tools export: a column naming the series, optionally a time
column ordering its steps, one column per feature, and optionally a label column. pandas is
optional; it is imported only when :func:`from_dataframe` is called.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rnnkit.data.arrays import from_arrays
from rnnkit.data.dataset import SequenceDataset
from rnnkit.data.labels import plain_label, unknown_label
from rnnkit.data.missing import MissingPolicy

__all__ = ["from_dataframe"]


def from_dataframe(
    df: Any,
    *,
    id: str,
    features: Sequence[str] | str,
    time: str | None = None,
    target: str | None = None,
    dtype: torch.dtype = torch.float32,
    missing: MissingPolicy = "error",
    classes: Sequence[Any] | np.ndarray[Any, Any] | None = None,
) -> SequenceDataset:
    """Build a dataset from a long table: one row per step of one series.

    Rows are grouped by ``id`` (series in sorted order of their ids, as ``df[id].unique()``
    sorted; a categorical id's unused categories make no series), ordered by ``time`` within
    each series (row order when ``None``), and padded to the longest series with its
    ``lengths`` set. Every row needs an id. The ``target``
    column holds each series' class label, the same on every row of a series; labels are
    encoded as with :func:`~rnnkit.data.from_arrays` (see ``classes``).

    Args:
        df: A ``pandas.DataFrame``.
        id: The column naming the series each row belongs to.
        features: The feature columns, C of them, in the order the model sees them (one
            column name alone is one feature).
        time: The column ordering steps within a series, or ``None`` for row order.
        target: The label column, or ``None`` for a dataset without targets.
        dtype: The floating dtype the inputs are stored in, as in
            :func:`~rnnkit.data.from_arrays` (``torch.float64`` is stored as ``float32``).
        missing: NaN handling, as in :func:`~rnnkit.data.from_arrays`.
        classes: The classes to encode labels with, e.g. a training set's ``classes``.

    Returns:
        A dataset with ``x`` of shape ``(N, max L_i, C)`` and ``lengths``.

    Raises:
        ImportError: pandas is not installed.
        KeyError: A named column is not in ``df``.
        ValueError: A row without an id or, with ``time``, without a time, two rows of one
            series at one time (the first such row is named), a
            series whose rows disagree on the label, have no label, or a label not among
            ``classes``, an infinite feature value, or NaN under ``missing="error"`` (each
            named by the series' id, and the row), or the errors of
            :func:`~rnnkit.data.from_arrays`.

    Shapes:
        - returns: ``x`` ``(N, max L_i, C)``, ``lengths`` ``(N,)``, ``y`` ``(N,)``.
    """
    _require_pandas()
    features = [features] if isinstance(features, str) else list(features)
    columns = [
        id,
        *features,
        *([] if time is None else [time]),
        *([] if target is None else [target]),
    ]
    absent = [c for c in columns if c not in df.columns]
    if absent:
        raise KeyError(
            f"Expected columns {absent} in the data frame, but it has {list(df.columns)}."
        )
    _check_ids(df, id)
    if time is not None:
        _check_times(df, id, time)
    table = df.sort_values([id, time], kind="stable") if time is not None else df
    _check_values(table, id, features, time, missing)
    # observed=True: a categorical id's unused categories would otherwise be empty series
    groups = table.groupby(id, sort=True, observed=True)
    series = [group[features].to_numpy(dtype=np.float64) for _, group in groups]
    labels = None if target is None else _labels(groups, id, target, classes)
    return from_arrays(series, labels, layout="NLC", dtype=dtype, missing=missing, classes=classes)


def _require_pandas() -> None:
    if importlib.util.find_spec("pandas") is None:
        raise ImportError(
            "from_dataframe needs pandas. Hint: `pip install pandas` (in rnnkit's `datasets` "
            "extra)."
        )


def _check_ids(df: Any, id: str) -> None:
    """Refuse rows without an id, which groupby would drop without a word."""
    absent = df[id].isna().to_numpy()
    if not bool(absent.any()):
        return
    first = int(absent.argmax())
    row, value = plain_label(df.index[first]), plain_label(df[id].iloc[first])
    raise ValueError(
        f"Expected every row to have an id in column `{id}`, but row {row!r} has {value!r}. "
        f"Hint: drop those rows with `df.dropna(subset=[{id!r}])`, or fill them with ids of "
        "their own."
    )


def _check_times(df: Any, id: str, time: str) -> None:
    """Refuse a row without a time and two rows of one series at one time (no order)."""
    absent = df[time].isna().to_numpy()
    if bool(absent.any()):
        row = plain_label(df.index[int(absent.argmax())])
        raise ValueError(
            f"Expected every row to have a time in column `{time}`, but row {row!r} has none. "
            "Hint: fill or drop it; without a time its step has no place in its series."
        )
    repeated = df.duplicated([id, time], keep=False).to_numpy()
    if bool(repeated.any()):
        first = int(repeated.argmax())
        key, at = (_shown(df[c].iloc[first]) for c in (id, time))
        same = (df[id] == df[id].iloc[first]) & (df[time] == df[time].iloc[first])
        rows = [plain_label(r) for r in df.index[same.to_numpy()][:2]]
        raise ValueError(
            f"Expected one row per series and time, but series {id}={key} has rows {rows} at "
            f"{time}={at}. Hint: aggregate them first (df.groupby([{id!r}, {time!r}]).mean()) "
            "or drop the duplicates."
        )


def _shown(value: Any) -> str:
    """An id or time as messages show it: labels as Python writes them, a timestamp as text."""
    plain = plain_label(value)
    return repr(plain) if isinstance(plain, str | int | float | bool) else str(plain)


def _check_values(
    table: Any, id: str, features: list[str], time: str | None, missing: MissingPolicy
) -> None:
    """Name the series, column and row of the first value that ``missing`` does not handle."""
    values = table[features].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) if missing == "error" else np.isinf(values)
    if not bool(bad.any()):
        return
    row, column = (int(i) for i in np.argwhere(bad)[0])
    at = "" if time is None else f" at {time}={_shown(table[time].iloc[row])}"
    hint = (
        "infinite values are always an error; clean the data first."
        if np.isinf(values[row, column])
        else "pass missing='ffill' (carry the last value forward) or missing='zero', or clean "
        "the data first."
    )
    raise ValueError(
        f"Expected the feature columns to hold finite values, but series "
        f"{id}={_shown(table[id].iloc[row])} has {values[row, column]} in column "
        f"{features[column]!r}{at} (row {plain_label(table.index[row])!r}); {int(bad.sum())} "
        f"such value(s) in all. Hint: {hint}"
    )


def _labels(groups: Any, id: str, target: str, classes: Any) -> np.ndarray[Any, Any]:
    """Each series' label, the first series with none, or one not in ``classes``, named."""
    counts = groups[target].nunique(dropna=False)
    mixed = counts[counts > 1]
    if len(mixed):
        raise ValueError(
            f"Expected one `{target}` label per series, but series "
            f"{id}={_shown(mixed.index[0])} has {int(mixed.iloc[0])} different labels. "
            "Hint: the label column must be constant within each series."
        )
    labels = groups[target].first()  # one value per series: all its rows agree
    absent = labels.isna().to_numpy()
    if bool(absent.any()):
        key = _shown(labels.index[int(absent.argmax())])
        raise ValueError(
            f"Expected every series to have a label in column `{target}`, but series "
            f"{id}={key} has none. Hint: drop that series' rows, or give it a class of its own."
        )
    values = np.asarray(labels.to_numpy())
    if classes is not None:
        known = np.asarray(classes)
        unknown = ~np.isin(values, known)
        if bool(unknown.any()):
            first = int(unknown.argmax())
            where = f"{target}[{id}={_shown(labels.index[first])}]"
            raise unknown_label(known, where, plain_label(values[first]))
    return values
