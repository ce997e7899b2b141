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
    with pytest.raises(ValueError, match="series series='b' has 2 different labels"):
        from_dataframe(table, id="series", time="t", features=["speed"], target="label")
    table["series"] = table["series"].map({"a": 3, "b": 7})  # numpy ints, shown as plain ints
    with pytest.raises(ValueError, match="series series=7 has 2 different labels"):
        from_dataframe(table, id="series", time="t", features=["speed"], target="label")


def test_missing_column_and_nan() -> None:
    with pytest.raises(KeyError, match="'speeed'"):
        from_dataframe(_long_table(), id="series", features=["speeed"])
    table = _long_table()
    table.loc[4, "speed"] = np.nan  # series "b", time 1
    message = (
        r"Expected the feature columns to hold finite values, but series series='b' has nan in "
        r"column 'speed' at t=1 \(row 4\); 1 such value\(s\) in all\. Hint: pass missing='ffill'"
    )
    with pytest.raises(ValueError, match=message):
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


def test_an_infinite_value_is_named_by_series_and_row_whatever_the_missing_policy() -> None:
    table = _long_table()
    table.loc[1, "tilt"] = np.inf  # series "a", time 1
    for missing in ("error", "ffill", "zero"):
        with pytest.raises(ValueError, match=r"series series='a' has inf in column 'tilt' at t=1"):
            from_dataframe(
                table, id="series", time="t", features=["speed", "tilt"], missing=missing
            )


def test_label_problems_name_the_series_not_a_position() -> None:
    table = _long_table()
    with pytest.raises(ValueError, match=r"but `label\[series='b'\]` is 'run'"):
        from_dataframe(
            table, id="series", time="t", features=["speed"], target="label", classes=["walk"]
        )
    table["label"] = table["label"].where(table["series"] == "a", None)
    with pytest.raises(ValueError, match="series series='b' has none"):
        from_dataframe(table, id="series", time="t", features=["speed"], target="label")


def test_one_feature_may_be_named_alone() -> None:
    alone = from_dataframe(_long_table(), id="series", time="t", features="speed")
    listed = from_dataframe(_long_table(), id="series", time="t", features=["speed"])
    assert alone.input_size == 1
    assert torch.equal(alone.x, listed.x)


def test_rows_without_a_time_or_at_a_repeated_time_are_named() -> None:
    table = _long_table()
    table.loc[3, "t"] = 1  # series "a" now has two rows at t=1: rows 1 and 3
    message = r"one row per series and time, but series series='a' has rows \[1, 3\] at t=1"
    with pytest.raises(ValueError, match=message):
        from_dataframe(table, id="series", time="t", features=["speed"])
    assert from_dataframe(table, id="series", features=["speed"]).x.shape == (2, 3, 1)
    table = _long_table()
    table["t"] = table["t"].astype(float)
    table.loc[2, "t"] = np.nan
    with pytest.raises(ValueError, match="to have a time in column `t`, but row 2 has none"):
        from_dataframe(table, id="series", time="t", features=["speed"])
