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
from rnnkit.data.labels import plain_label
from rnnkit.data.missing import MissingPolicy

__all__ = ["from_dataframe"]


def from_dataframe(
    df: Any,
    *,
    id: str,
    features: Sequence[str],
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
        features: The feature columns, C of them, in the order the model sees them.
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
        ValueError: A row without an id (NaN or ``None``; the first such row is named), a
            series whose rows disagree on the label (its id is named), NaN under
            ``missing="error"``, or the errors of :func:`~rnnkit.data.from_arrays`.

    Shapes:
        - returns: ``x`` ``(N, max L_i, C)``, ``lengths`` ``(N,)``, ``y`` ``(N,)``.
    """
    _require_pandas()
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
    table = df.sort_values([id, time], kind="stable") if time is not None else df
    # observed=True: a categorical id's unused categories would otherwise be empty series
    groups = table.groupby(id, sort=True, observed=True)
    series = [group[list(features)].to_numpy(dtype=np.float64) for _, group in groups]
    labels = None if target is None else _labels(groups, target)
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


def _labels(groups: Any, target: str) -> np.ndarray[Any, Any]:
    counts = groups[target].nunique(dropna=False)
    mixed = counts[counts > 1]
    if len(mixed):
        raise ValueError(
            f"Expected one `{target}` label per series, but series {mixed.index[0]!r} has "
            f"{int(mixed.iloc[0])} different labels. Hint: the label column must be constant "
            "within each series."
        )
    return np.asarray(groups[target].first().to_numpy())
