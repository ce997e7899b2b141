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

    Rows are grouped by ``id`` (series in sorted order of their ids, as
    ``df[id].unique()`` sorted), ordered by ``time`` within each series (row order when
    ``None``), and padded to the longest series with its ``lengths`` set. The ``target``
    column holds each series' class label, the same on every row of a series; labels are
    encoded as with :func:`~rnnkit.data.from_arrays` (see ``classes``).

    Args:
        df: A ``pandas.DataFrame``.
        id: The column naming the series each row belongs to.
        features: The feature columns, C of them, in the order the model sees them.
        time: The column ordering steps within a series, or ``None`` for row order.
        target: The label column, or ``None`` for a dataset without targets.
        dtype: The floating dtype the inputs are stored in.
        missing: NaN handling, as in :func:`~rnnkit.data.from_arrays`.
        classes: The classes to encode labels with, e.g. a training set's ``classes``.

    Returns:
        A dataset with ``x`` of shape ``(N, max L_i, C)`` and ``lengths``.

    Raises:
        ImportError: pandas is not installed.
        KeyError: A named column is not in ``df``.
        ValueError: A series whose rows disagree on the label (its id is named), NaN under
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
    table = df.sort_values([id, time], kind="stable") if time is not None else df
    groups = table.groupby(id, sort=True)
    series = [group[list(features)].to_numpy(dtype=np.float64) for _, group in groups]
    labels = None if target is None else _labels(groups, target)
    return from_arrays(series, labels, layout="NLC", dtype=dtype, missing=missing, classes=classes)


def _require_pandas() -> None:
    if importlib.util.find_spec("pandas") is None:
        raise ImportError(
            "from_dataframe needs pandas. Hint: `pip install pandas` (or rnnkit[datasets])."
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
