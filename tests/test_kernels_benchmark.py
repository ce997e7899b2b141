"""The GRU/LSTM kernel benchmark runs on tiny sizes and prints a row per cell and shape.

Its timings are not asserted: speed targets live in the script's output, not in tests.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gru_lstm_kernel  # noqa: E402


def test_smoke_run_prints_the_machine_and_a_row_per_cell_and_shape(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert gru_lstm_kernel.main(["--smoke", "--steps", "3", "--only", "mnist", "mnist-bi"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^machine .*, \d+ CPUs; torch .*, \d+ threads, 3 steps, 1 round", out, re.M)
    number = r"\d+\.\d{3}"
    for cell in ("gru", "lstm"):
        for shape in ("mnist", "mnist-bi"):
            row = rf"^{cell} +{shape} +{number} +{number} +{number} +{number} +{number}$"
            assert re.search(row, out, re.M), (cell, shape)
    assert "long" not in out


def test_the_floor_counts_every_layer_and_direction() -> None:
    shape = gru_lstm_kernel.Shape(2, 3, 4, 5, num_layers=2, bidirectional=True)
    rows, width = 2 * 3, 3 * 5
    first, second = 2 * 3 * 2 * rows * width * (4 + 5), 2 * 3 * 2 * rows * width * (10 + 5)
    assert gru_lstm_kernel.step_flops("gru", shape) == first + second


def test_smoke_run_says_whether_the_step_is_compiled_and_times_torch_operation_steps(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--smoke", "--steps", "3", "--only", "mnist", "--cells", "gru", "--torch-steps"]
    assert gru_lstm_kernel.main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"^compiled step: (yes \(built or loaded in .* s\)|no \(.+\))$", out, re.M)
    assert re.search(r"torch-steps ms +torch-steps / torch$", out, re.M)
    number = r"\d+\.\d{3}"
    assert re.search(rf"^gru +mnist(?: +{number}){{7}}$", out, re.M)


def test_rounds_end_each_row_with_the_range_of_the_ratio(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--smoke", "--steps", "3", "--rounds", "3", "--only", "mnist", "--cells", "lstm"]
    assert gru_lstm_kernel.main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"3 steps, 3 round\(s\)$", out, re.M)
    assert re.search(r"floor / torch rnnkit / torch range$", out, re.M)
    number = r"\d+\.\d{3}"
    row = re.search(rf"^lstm +mnist(?: +{number}){{5}} +{number}-{number}$", out, re.M)
    assert row is not None
    fields = row[0].split()
    ratio = float(fields[4])
    low, high = (float(value) for value in fields[-1].split("-"))
    assert low <= ratio <= high


def test_paired_ratio_is_the_median_of_per_step_ratios() -> None:
    assert gru_lstm_kernel.paired_ratio([1.0, 2.0, 4.0], [2.0, 1.0, 4.0]) == 1.0


def test_rounds_below_one_are_refused_before_any_work(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        gru_lstm_kernel.main(["--smoke", "--rounds", "0"])
    assert "--rounds must be at least 1, but got 0" in capsys.readouterr().err
