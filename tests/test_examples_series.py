"""The series examples: smoke runs (offline, seconds) and their parts against references."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rnnkit import SequenceClassifier, Trainer
from rnnkit.data import Batch, from_arrays

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import _input_noise  # noqa: E402
import classify_series  # noqa: E402
import forecast_series  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _summary(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("summary: ")]
    assert len(lines) == 1, output
    return lines[0]


def test_classify_smoke_runs_on_the_standin_without_aeon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "aeon", None)  # `import aeon` now raises ImportError
    runs = classify_series.main(out=tmp_path, smoke=True, hidden_size=8)
    summary = _summary(capsys.readouterr().out)
    assert "dataset=standin" in summary
    assert len(runs) == 1
    assert 0.0 <= runs[0].test_accuracy <= 1.0
    assert (tmp_path / "classify_standin.png").read_bytes()[:8] == PNG_MAGIC


def test_classify_smoke_runs_on_bundled_basicmotions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("aeon")
    classify_series.main(out=tmp_path, smoke=True, hidden_size=8)
    out = capsys.readouterr().out
    assert "dataset=BasicMotions" in _summary(out)
    assert "data: BasicMotions N_train=40 N_test=40 C=6 L=100" in out


def test_standin_is_ragged_and_in_aeons_layout() -> None:
    x, y = classify_series.standin("train")
    data = from_arrays(x, y, layout="NCL")
    assert data.input_size == 2
    assert data.lengths is not None
    assert data.lengths.tolist() == [s.shape[1] for s in x]
    assert data.classes is not None
    assert data.classes.tolist() == ["fast", "flat", "slow"]


def test_frames_group_consecutive_steps() -> None:
    x = np.arange(2 * 5 * 2, dtype=np.float64).reshape(2, 5, 2)
    data = from_arrays([x[0], x[1, :3]], ["a", "b"])
    framed = classify_series.to_frames(data, 2)
    assert framed.x.shape == (2, 3, 4)
    assert framed.x[0, 0].tolist() == [0.0, 1.0, 2.0, 3.0]  # steps 0 and 1, channels interleaved
    assert framed.x[0, 2].tolist() == [8.0, 9.0, 0.0, 0.0]  # last step and zero padding
    assert framed.lengths is not None
    assert framed.lengths.tolist() == [3, 2]
    assert framed.classes is not None
    assert framed.classes.tolist() == ["a", "b"]
    assert classify_series.resolve_frame("auto", 150) == 3
    assert classify_series.resolve_frame("auto", 29) == 1


def test_stratified_split_keeps_every_class_in_both_parts() -> None:
    data = from_arrays(np.zeros((20, 3, 1)), ["a"] * 10 + ["b"] * 5 + ["c"] * 5)
    train, val = classify_series.stratified_split(data, 0.2, seed=0)
    assert len(train) + len(val) == 20
    assert val.y is not None
    assert train.y is not None
    assert torch.bincount(val.y, minlength=3).tolist() == [2, 1, 1]
    assert set(train.y.tolist()) == {0, 1, 2}


def test_stratified_folds_partition_the_data_and_deal_every_class_evenly() -> None:
    data = from_arrays(np.zeros((15, 3, 1)), ["a"] * 5 + ["b"] * 3 + ["c"] * 7)
    folds = classify_series.stratified_folds(data, 3, seed=0)
    assert sorted(torch.cat(folds).tolist()) == list(range(15))  # disjoint, and all of them
    assert data.y is not None
    counts = torch.stack([torch.bincount(data.y[f], minlength=3) for f in folds])
    assert (counts.max(0).values - counts.min(0).values).tolist() == [1, 0, 1]  # 5, 3, 7 over 3
    assert counts.sum(0).tolist() == [5, 3, 7]
    other = classify_series.stratified_folds(data, 3, seed=1)
    assert [f.tolist() for f in other] != [f.tolist() for f in folds]  # drawn per seed


class _Unreadable(list[Any]):
    """A test split that fails the moment anything reads a series of it."""

    def __iter__(self) -> Any:
        raise AssertionError("the test split was read")

    def __getitem__(self, index: Any) -> Any:
        raise AssertionError("the test split was read")


def test_cross_validation_never_reads_the_test_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = classify_series.standin("train")
    unreadable = _Unreadable([None] * 3)
    monkeypatch.setattr(
        classify_series,
        "load_splits",
        lambda name, smoke, test=True: (x, y, unreadable, unreadable, True),
    )
    runs = classify_series.main(out=tmp_path, smoke=True, hidden_size=8, cv=2)
    summary = _summary(capsys.readouterr().out)
    assert "cv=2" in summary
    assert "cv_accuracy=[" in summary
    assert f"cv_log_loss=[{runs[0].log_loss:.4f}]" in summary
    assert len(runs) == 1
    assert 0.0 <= runs[0].test_accuracy <= 1.0
    assert runs[0].log_loss > 0.0


def test_cross_validation_averages_every_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = classify_series.standin("train")
    train = from_arrays(x, y, layout="NCL")
    folds: list[int] = []

    def scored(seed: int, fit: Any, held_out: Any, **settings: Any) -> classify_series.SeedRun:
        folds.append(len(held_out))  # fold k scores k / 10 and a log loss of k
        k = len(folds)
        return classify_series.SeedRun(seed, k / 10, 1, seconds=1.0, log_loss=float(k))

    monkeypatch.setattr(classify_series, "run_seed", scored)
    run = classify_series.cross_validate(7, train, 3, epochs=5)
    assert sum(folds) == len(train)
    assert (run.seed, run.kept_epoch, run.seconds) == (7, 5, 3.0)
    assert run.test_accuracy == pytest.approx(0.2)
    assert run.log_loss == pytest.approx(2.0)


def test_log_loss_is_torch_cross_entropy_of_the_probabilities() -> None:
    logits = torch.randn(7, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3, 3, 2, 1])
    expected = torch.nn.functional.cross_entropy(logits, labels).item()
    assert classify_series.log_loss(logits.softmax(-1), labels) == pytest.approx(expected)
    certain_miss = torch.tensor([[1.0, 0.0]])  # log(0) is floored, not infinite
    assert classify_series.log_loss(certain_miss, torch.tensor([1])) == pytest.approx(
        -math.log(1e-7)
    )


@pytest.mark.parametrize("readout", ["mean", "max"])
def test_the_readout_option_reaches_the_classifier_and_the_summary(
    readout: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "aeon", None)
    monkeypatch.setattr(torch, "set_num_threads", lambda threads: None)  # cli() sets one thread
    built: list[SequenceClassifier] = []

    def recording(*args: Any, **kwargs: Any) -> SequenceClassifier:
        built.append(SequenceClassifier(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(classify_series, "SequenceClassifier", recording)
    classify_series.cli(
        ["--smoke", "--hidden-size", "8", "--out", str(tmp_path), "--readout", readout]
    )
    assert [model.readout for model in built] == [readout]
    assert f"readout={readout}" in _summary(capsys.readouterr().out)


def test_the_weight_decay_option_trains_with_adamw_and_that_decay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "aeon", None)
    monkeypatch.setattr(torch, "set_num_threads", lambda threads: None)  # cli() sets one thread
    optimizers: list[torch.optim.Optimizer] = []
    original = Trainer.configure_optimizer

    def recording(self: Any, model: torch.nn.Module) -> torch.optim.Optimizer:
        optimizers.append(original(self, model))
        return optimizers[-1]

    monkeypatch.setattr(Trainer, "configure_optimizer", recording)
    argv = ["--smoke", "--hidden-size", "8", "--out", str(tmp_path), "--lr", "0.002"]
    classify_series.cli([*argv, "--weight-decay", "0.25"])
    assert "weight_decay=0.25" in _summary(capsys.readouterr().out)
    classify_series.cli(argv)
    assert "weight_decay" not in _summary(capsys.readouterr().out)
    decayed, plain = optimizers
    assert isinstance(decayed, torch.optim.AdamW)
    assert decayed.defaults["weight_decay"] == 0.25
    assert decayed.defaults["lr"] == 0.002
    assert decayed.defaults["fused"] is True  # float32 on the CPU
    assert type(plain) is torch.optim.Adam
    assert plain.defaults["weight_decay"] == 0
    with pytest.raises(SystemExit, match="--weight-decay and --noise a value >= 0"):
        classify_series.cli([*argv, "--weight-decay", "-1"])


def test_jitter_goes_on_every_step_but_the_padding() -> None:
    torch.manual_seed(0)
    x = torch.zeros(2, 4, 3000)
    batch = Batch(x, torch.tensor([0, 1]), torch.tensor([3, 1]))
    state = torch.get_rng_state()
    assert _input_noise.with_input_noise(batch, 0.0) is batch
    assert torch.equal(torch.get_rng_state(), state)  # no draw: earlier runs reproduce
    noisy = _input_noise.with_input_noise(batch, 0.5)
    assert noisy.x.shape == (2, 4, 3000)
    assert noisy.y is batch.y
    assert noisy.lengths is batch.lengths
    assert torch.equal(noisy.x[0, 3], torch.zeros(3000))  # padding
    assert torch.equal(noisy.x[1, 1:], torch.zeros(3, 3000))
    for valid in (noisy.x[0, :3], noisy.x[1, :1]):
        assert valid.std().item() == pytest.approx(0.5, rel=0.05)
        assert bool((valid != 0).all())
    unpadded = _input_noise.with_input_noise(Batch(x), 0.5)
    assert unpadded.x.std().item() == pytest.approx(0.5, rel=0.05)
    state = torch.get_rng_state()
    own = [
        _input_noise.with_input_noise(batch, 0.5, torch.Generator().manual_seed(1)) for _ in "ab"
    ]
    assert torch.equal(own[0].x, own[1].x)  # its own generator: the same noise for one seed
    assert not torch.equal(own[0].x, noisy.x)
    assert torch.equal(torch.get_rng_state(), state)  # and the global generator untouched


def test_the_noise_option_jitters_the_training_steps_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "aeon", None)
    monkeypatch.setattr(torch, "set_num_threads", lambda threads: None)  # cli() sets one thread
    seen: list[tuple[float, bool]] = []
    original = _input_noise.with_input_noise

    def recording(batch: Batch, noise: float, generator: torch.Generator | None = None) -> Batch:
        seen.append((noise, torch.is_grad_enabled()))
        return original(batch, noise, generator)

    monkeypatch.setattr(_input_noise, "with_input_noise", recording)
    classify_series.cli(["--smoke", "--hidden-size", "8", "--out", str(tmp_path), "--noise", "0.2"])
    assert "noise=0.2" in _summary(capsys.readouterr().out)
    series = len(classify_series.standin("train")[1])
    steps = 2 * math.ceil(series / 16)  # two epochs of the stand-in in batches of 16
    assert seen == [(0.2, True)] * steps  # no call from predicting the test split
    with pytest.raises(SystemExit, match="--weight-decay and --noise a value >= 0"):
        classify_series.cli(["--smoke", "--out", str(tmp_path), "--noise", "-0.1"])


def test_cross_validation_does_not_even_load_the_test_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("aeon")
    loaded: list[str] = []
    original = classify_series.load_archive

    def recording(name: str, split: str) -> Any:
        loaded.append(split)
        return original(name, split)

    monkeypatch.setattr(classify_series, "load_archive", recording)
    classify_series.main(out=tmp_path, smoke=True, hidden_size=8, cv=2)
    assert loaded == ["train"]
    assert "N_test=(not loaded)" in capsys.readouterr().out
    classify_series.main(out=tmp_path, smoke=True, hidden_size=8)
    assert loaded == ["train", "test", "train"]


def test_an_ensemble_averages_its_members_probabilities() -> None:
    train = from_arrays(*classify_series.standin("train"), layout="NCL")
    test = from_arrays(*classify_series.standin("test"), layout="NCL", classes=train.classes)
    options = {
        "model": {"hidden_size": 4, "cell": "gru"},
        "trainer": {"batch_size": 16, "progress": False},
    }
    members = [classify_series._train_one(s, train, test, options, 2, 0.0) for s in (3000, 3001)]
    mean = (members[0][0] + members[1][0]) / 2
    assert test.y is not None
    expected = float((mean.argmax(-1) == test.y).double().mean())
    run = classify_series.run_seed(
        3, train, test, options=options, epochs=2, val_fraction=0.0, ensemble=2
    )
    assert run.test_accuracy == expected
    assert run.train_loss == members[0][1].train_loss
    alone, _ = classify_series._train_one(3, train, test, options, 2, 0.0)  # one network: seed 3
    single = classify_series.run_seed(3, train, test, options=options, epochs=2, val_fraction=0.0)
    assert single.test_accuracy == float((alone.argmax(-1) == test.y).double().mean())


def test_forecast_smoke_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    forecasts = forecast_series.main(out=tmp_path, smoke=True, hidden_size=8)
    out = capsys.readouterr().out
    summary = _summary(out)
    assert "seasonal_naive_mape=13.19" in summary
    assert {f.method for f in forecasts} >= {"seasonal_naive", "growth_naive", "rnnkit_gru_seed0"}
    assert (tmp_path / "forecast_airline.png").read_bytes()[:8] == PNG_MAGIC


def test_forecast_smoke_run_with_the_detrended_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert forecast_series.parse_args(["--target", "detrend"]).target == "detrend"
    forecasts = forecast_series.main(out=tmp_path, smoke=True, hidden_size=8, target="detrend")
    assert "target=detrend" in _summary(capsys.readouterr().out)
    network = forecasts[-1]
    assert network.method == "rnnkit_gru_seed0"
    assert network.values.shape == (36,)
    assert len(network.bias) == 3
    assert np.all(np.isfinite(network.values))
    assert np.all(network.values > 0)


def test_bundled_airline_is_aeons() -> None:
    datasets = pytest.importorskip("aeon.datasets")
    ours = forecast_series.load_series("airline", None, None)
    assert np.array_equal(ours, np.asarray(datasets.load_airline(), dtype=np.float64))


def test_target_round_trip_reproduces_the_holdout() -> None:
    y = forecast_series.load_series("airline", None, None)
    history, holdout = y[:-36], y[-36:]
    targets: tuple[forecast_series.Target, ...] = ("diff", "diff2")
    for target in targets:
        full = forecast_series.to_target(y, 12, target)
        truth = full[-36:]  # the target values of the holdout months
        rebuilt = forecast_series.from_target(truth, history, 12, target)
        assert np.allclose(rebuilt, holdout)


def test_detrend_target_is_the_log_minus_the_history_line() -> None:
    history = np.exp(0.5 + 0.1 * np.arange(30) + 0.2 * np.sin(np.arange(30)))
    assert forecast_series.log_trend(np.exp(2.0 + 0.3 * np.arange(5))) == pytest.approx((2.0, 0.3))
    intercept, slope = forecast_series.log_trend(history)
    target = forecast_series.to_target(history, 12, "detrend")
    assert target.shape == (30,)
    assert np.allclose(target, np.log(history) - intercept - slope * np.arange(30))
    # a zero prediction continues the history's line; an offset scales it
    ahead = forecast_series.from_target(np.array([0.0, 0.1]), history, 12, "detrend")
    line = np.exp(intercept + slope * np.array([30, 31]))
    assert np.allclose(ahead, line * np.exp([0.0, 0.1]))


def test_metrics_against_hand_computation() -> None:
    history = np.array([1.0, 2.0, 3.0, 4.0, 6.0])
    holdout = np.array([10.0, 20.0])
    result = forecast_series.score("x", np.array([11.0, 18.0]), history, holdout, season=2)
    assert result.mape == pytest.approx(100 * (0.1 + 0.1) / 2)
    assert result.rmse == pytest.approx(np.sqrt((1 + 4) / 2))
    assert result.mase == pytest.approx(1.5 / np.mean([2.0, 2.0, 3.0]))
    assert result.bias == pytest.approx([100 * (0.1 - 0.1) / 2])  # one season of two steps
    per_step = forecast_series.score(
        "x", np.array([11.0, 18.0, 33.0]), history, np.array([10.0, 20.0, 30.0]), 2
    )
    assert per_step.bias == pytest.approx([0.0, 10.0])  # the last season is the partial one
    assert "bias_by_season=[+0.0,+10.0]%" in per_step.report()
    assert forecast_series.seasonal_naive(history, 3, 2).tolist() == [4.0, 6.0, 4.0]


def test_csv_series(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("month,value\n1,5\n2,7\n")
    assert forecast_series.load_series("ignored", str(path), "value").tolist() == [5.0, 7.0]
    with pytest.raises(SystemExit, match="not a column"):
        forecast_series.load_series("ignored", str(path), "nope")


def test_backtest_shift_forecasts_from_an_earlier_origin(tmp_path: Path) -> None:
    y = forecast_series.load_series("airline", None, None)
    forecasts = forecast_series.main(
        out=tmp_path, smoke=True, hidden_size=8, backtest=True, shift=6
    )
    # holdout and backtest horizon (36 each) and 6 more values left out: history is y[:66]
    naive = next(f for f in forecasts if f.method == "seasonal_naive")
    assert np.array_equal(naive.values[:12], y[54:66])
    assert (tmp_path / "forecast_airline_backtest_shift6.png").exists()


@pytest.mark.parametrize("options", [{"shift": 6}, {"shift": -1, "backtest": True}])
def test_shift_needs_backtest_and_a_count(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(SystemExit, match="--shift takes a count of values >= 0"):
        forecast_series.main(out=tmp_path, smoke=True, **options)


def test_more_folds_than_any_class_has_series_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--cv 50 leaves folds empty"):
        classify_series.main(out=tmp_path, smoke=True, hidden_size=8, cv=50)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "month,passengers\n1,112\n2,n/a\n",
            r"line 3 of the CSV has 'n/a' in --column 'passengers'",
        ),
        ("month,passengers\n1,112\n2,\n", r"line 3 of the CSV has '' in --column"),
        ("month,passengers\n1,112\n2\n", r"line 3 of the CSV has None in --column"),
        ("month,passengers\n1,nan\n", r"line 2 of the CSV has 'nan'"),
        ("month,passengers\n", r"has a header but no rows"),
        ("month,passengers\n\n1,112\n2,x\n", r"line 4 of the CSV has 'x'"),
        ('month,passengers\n1,"11\n2"\n', r"line 3 of the CSV has '11\\n2'"),
        (
            "month,riders\n1,2\n",
            r"--column 'passengers' is not a column of .*; it has \['month', 'riders'\]",
        ),
    ],
)
def test_a_csv_series_with_a_bad_cell_exits_naming_it(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "series.csv"
    path.write_text(text)
    with pytest.raises(SystemExit, match=message):
        forecast_series.load_series("airline", str(path), "passengers")


def test_a_csv_with_a_byte_order_mark_and_spaced_header_reads(tmp_path: Path) -> None:
    path = tmp_path / "series.csv"
    path.write_bytes("\ufeffmonth, passengers\n1, 112\n2, 118\n".encode())
    assert forecast_series.load_series("airline", str(path), "passengers").tolist() == [112, 118]
    assert forecast_series.load_series("airline", str(path), " passengers").tolist() == [112, 118]
    extra = tmp_path / "extra.csv"
    extra.write_text("month,None\n1,112,9\n2,118\n")  # a long row's extra cell is not a column
    assert forecast_series.load_series("airline", str(extra), "None").tolist() == [112, 118]
    latin = tmp_path / "latin.csv"
    latin.write_bytes("mois,passagers\n1,112\n\xe9t\xe9,118\n".encode("latin-1"))
    with pytest.raises(SystemExit, match=r"cannot read --csv .* \(UTF-8 text\)"):
        forecast_series.load_series("airline", str(latin), "passagers")
    with pytest.raises(SystemExit, match="cannot read --csv"):
        forecast_series.load_series("airline", str(tmp_path / "missing.csv"), "passengers")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"horizon": 0}, "--horizon takes a count >= 1, but got 0"),
        ({"season": 1}, "--season takes a count >= 2, but got 1"),
        ({"ensemble": 0}, "--ensemble takes a count >= 1, but got 0"),
        ({"epochs": 0}, "--epochs takes a count >= 1, but got 0"),
    ],
)
def test_forecast_counts_are_checked_before_any_work(option: dict[str, int], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        forecast_series.main(**option, smoke=True)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "option", [{"val_fraction": 1.5}, {"frame": "0"}, {"frame": "abc"}, {"frame": "²"}]
)
def test_classify_options_are_checked_before_any_data_is_read(option: dict[str, Any]) -> None:
    with pytest.raises(SystemExit, match=r"--val-fraction takes a share in \[0, 1\); --frame"):
        classify_series.main(dataset="NoSuchSet", **option)


def test_an_unknown_dataset_name_exits_with_the_case_hint() -> None:
    pytest.importorskip("aeon")
    with pytest.raises(SystemExit, match=r"(?s)cannot load --dataset 'gunpoint': .*case-sensitive"):
        classify_series.load_archive("gunpoint", "train")


@pytest.mark.parametrize("frame", [3, " 3", "+3", "03"])
def test_classify_frame_takes_what_int_reads(frame: Any) -> None:
    assert classify_series._frame_ok(frame)


def test_classify_epochs_are_checked_before_any_data_is_read() -> None:
    with pytest.raises(SystemExit, match="--epochs takes a count >= 1, but got 0"):
        classify_series.main(dataset="NoSuchSet", epochs=0)
