"""Tests for rnnkit.training.history.History."""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rnnkit.training.history import History

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _history() -> History:
    history = History()
    for epoch, (loss, acc) in enumerate([(1.2, 0.5), (0.7, 0.8), (0.9, 0.75)]):
        history.append({"epoch": epoch, "loss": loss, "accuracy": acc, "val_loss": loss + 0.1})
    history.append({"epoch": 3, "loss": 0.6, "accuracy": 0.85})  # no validation this epoch
    return history


def test_indexing_by_epoch_and_by_key() -> None:
    history = _history()
    assert len(history) == 4
    assert history[1] == {"epoch": 1, "loss": 0.7, "accuracy": 0.8, "val_loss": 0.7 + 0.1}
    assert history[-1]["loss"] == 0.6
    assert history["loss"] == [1.2, 0.7, 0.9, 0.6]
    val = history["val_loss"]
    assert val[:3] == [1.2 + 0.1, 0.7 + 0.1, 0.9 + 0.1]
    assert math.isnan(val[3])
    assert history.keys == ["epoch", "loss", "accuracy", "val_loss"]
    with pytest.raises(KeyError, match=r"'val_accuracy'.*'loss'"):
        history["val_accuracy"]
    with pytest.raises(IndexError):
        history[4]
    with pytest.raises(TypeError, match="int or str"):
        history[True]


def test_records_are_copies() -> None:
    record = {"epoch": 0, "loss": 1.0}
    history = History([record])
    record["loss"] = 5.0
    history[0]["loss"] = 7.0
    next(iter(history))["loss"] = 9.0
    history.to_list()[0]["loss"] = 11.0
    assert history[0]["loss"] == 1.0


def test_iteration_and_to_list_are_json_able() -> None:
    history = _history()
    assert [r["epoch"] for r in history] == [0, 1, 2, 3]
    assert json.loads(json.dumps(history.to_list())) == history.to_list()


def test_append_rejects_non_numbers() -> None:
    history = History()
    with pytest.raises(TypeError, match=r"`record`.*'loss'.*Tensor.*\.item\(\)"):
        history.append({"loss": torch.tensor(1.0)})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="str keys"):
        history.append({1: 2.0})  # type: ignore[dict-item]
    assert len(history) == 0


def test_update_last() -> None:
    history = _history()
    history.update_last({"lr": 0.01})
    assert history[-1]["lr"] == 0.01
    assert "lr" not in history[-2]
    with pytest.raises(IndexError, match="empty"):
        History().update_last({"lr": 0.1})


def test_best() -> None:
    history = _history()
    assert history.best("loss")["epoch"] == 3
    assert history.best("accuracy", mode="max")["epoch"] == 3
    assert history.best("accuracy") == history.best("accuracy", mode="max")  # "auto"
    assert history.best("accuracy", mode="min") != history.best("accuracy", mode="max")
    assert history.best("val_loss")["epoch"] == 1  # the record without val_loss is skipped
    history.append({"epoch": 4, "val_loss": math.nan})
    assert history.best("val_loss", "max")["epoch"] == 0  # NaN skipped
    with pytest.raises(KeyError, match="'missing'"):
        history.best("missing")
    with pytest.raises(ValueError, match="'min', 'max' or 'auto'"):
        history.best("loss", mode="best")  # type: ignore[arg-type]


def test_state_dict_round_trip_through_torch_save(tmp_path: Path) -> None:
    history = _history()
    state = history.state_dict()
    json.dumps(state)  # plain types only
    torch.save(state, tmp_path / "h.pt")
    restored = History()
    restored.load_state_dict(torch.load(tmp_path / "h.pt", weights_only=True))
    assert restored == history
    assert restored.to_list() == history.to_list()
    assert restored is not history
    with pytest.raises(ValueError, match="'records' list"):
        restored.load_state_dict({"epochs": []})


def test_numpy_numbers_are_stored_as_plain_numbers_and_load_weights_only(tmp_path: Path) -> None:
    logged: dict[str, Any] = {"epoch": np.int64(0), "f1": np.float64(0.5), "auc": np.float32(0.25)}
    history = History([logged])
    record = history[0]
    assert [type(record[k]) for k in ("epoch", "f1", "auc")] == [int, float, float]
    assert record == {"epoch": 0, "f1": 0.5, "auc": 0.25}
    torch.save(history.state_dict(), tmp_path / "h.pt")
    restored = History()
    restored.load_state_dict(torch.load(tmp_path / "h.pt", weights_only=True))
    assert restored == history
    with pytest.raises(TypeError, match="map str keys to numbers"):
        History([{"epoch": 0, "ok": np.bool_(True)}])  # type: ignore[dict-item]


def test_plot_takes_one_key_as_a_string_and_refuses_none(tmp_path: Path) -> None:
    history = _history()
    _check_png(history.plot("loss", path=tmp_path / "loss.png"))
    with pytest.raises(ValueError, match="at least one column"):
        history.plot([], path=tmp_path / "none.png")


def test_errors_say_what_was_expected_what_came_and_a_hint() -> None:
    history = _history()
    with pytest.raises(
        TypeError, match=r"^Expected a History index of type int or str, but got float\. Hint: "
    ):
        history[1.5]  # type: ignore[call-overload]
    with pytest.raises(
        KeyError, match=r"^\"Expected a key some record holds, but got 'f1'; .* Hint: "
    ):
        history["f1"]
    with pytest.raises(
        IndexError, match=r"^Expected a History with a record to update, but it is empty\. Hint: "
    ):
        History().update_last({"loss": 1.0})


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1000


def test_plot_writes_png(tmp_path: Path) -> None:
    history = _history()
    out = history.plot(("accuracy", "loss"), path=tmp_path / "curve.png", title="MNIST")
    assert out == tmp_path / "curve.png"
    _check_png(out)


def test_plot_default_keys_and_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    regression = History([{"epoch": 0, "loss": 1.0, "val_loss": 1.1}, {"epoch": 1, "loss": 0.5}])
    out = regression.plot()  # no accuracy column: falls back to the losses
    assert out == Path("history.png")
    _check_png(tmp_path / "history.png")
    with pytest.raises(KeyError, match="'val_accuracy'"):
        regression.plot(["val_accuracy"], path=tmp_path / "x.png")
    with pytest.raises(ValueError, match="empty"):
        History().plot(path=tmp_path / "y.png")


def test_plot_does_not_touch_pyplot_state(tmp_path: Path) -> None:
    import matplotlib

    backend = matplotlib.get_backend()
    _history().plot(path=tmp_path / "a.png")
    assert matplotlib.get_backend() == backend
    assert "matplotlib.pyplot" not in sys.modules or _no_open_figures()


def _no_open_figures() -> bool:
    import matplotlib.pyplot as plt

    return not plt.get_fignums()


def test_plot_without_matplotlib_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install matplotlib` \(rnnkit\'s `plot` extra\)"):
        _history().plot(path=tmp_path / "z.png")
    assert not (tmp_path / "z.png").exists()


def test_repr() -> None:
    text = repr(_history())
    assert "4 epochs" in text
    assert "val_loss" in text
    buffer = io.StringIO()
    print(History(), file=buffer)
    assert "0 epochs" in buffer.getvalue()
