"""from_dataframe against from_arrays on the same series, built by hand."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest
import torch

from rnnkit.data import from_arrays, from_dataframe

pd = pytest.importorskip("pandas")


def _long_table() -> Any:
    # series "b" (3 steps) and "a" (2 steps), rows shuffled, with a time column
    rows = [
        ("b", 2, 30.0, 0.3, "run"),
        ("a", 1, 2.0, 0.2, "walk"),
        ("b", 0, 10.0, 0.1, "run"),
        ("a", 0, 1.0, 0.1, "walk"),
        ("b", 1, 20.0, 0.2, "run"),
    ]
    return pd.DataFrame(rows, columns=["series", "t", "speed", "tilt", "label"])


def test_long_table_matches_from_arrays() -> None:
    data = from_dataframe(
        _long_table(), id="series", time="t", features=["speed", "tilt"], target="label"
    )
    expected = from_arrays(
        [np.array([[1.0, 0.1], [2.0, 0.2]]), np.array([[10.0, 0.1], [20.0, 0.2], [30.0, 0.3]])],
        ["walk", "run"],
    )
    assert torch.equal(data.x, expected.x)
    assert data.lengths is not None
    assert data.lengths.tolist() == [2, 3]
    assert data.y is not None
    assert data.y.tolist() == [1, 0]
    assert data.decode(data.y).tolist() == ["walk", "run"]


def test_without_time_rows_keep_their_order_and_no_target() -> None:
    data = from_dataframe(_long_table(), id="series", features=["t"])
    assert data.y is None
    assert data.x[1, :, 0].tolist() == [2.0, 0.0, 1.0]  # series "b" in row order


def test_label_changing_within_a_series_is_an_error() -> None:
    table = _long_table()
    table.loc[0, "label"] = "walk"
    with pytest.raises(ValueError, match="series 'b' has 2 different labels"):
        from_dataframe(table, id="series", time="t", features=["speed"], target="label")


def test_missing_column_and_nan() -> None:
    with pytest.raises(KeyError, match="'speeed'"):
        from_dataframe(_long_table(), id="series", features=["speeed"])
    table = _long_table()
    table.loc[4, "speed"] = np.nan  # series "b", time 1
    with pytest.raises(ValueError, match="sample 1 has NaN at step 1"):
        from_dataframe(table, id="series", time="t", features=["speed"])
    filled = from_dataframe(table, id="series", time="t", features=["speed"], missing="ffill")
    assert filled.x[1, :, 0].tolist() == [10.0, 10.0, 30.0]


def test_without_pandas_the_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pandas" else real(name, *a)
    )
    with pytest.raises(ImportError, match="pip install pandas"):
        from_dataframe(object(), id="i", features=["f"])
    assert "pandas" in sys.modules  # the real one stays importable for the other tests
