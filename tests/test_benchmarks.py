"""The benchmarks run (a few batches on a generated MNIST-format stand-in) and print figures.

Their timings are not asserted: speed targets live in the scripts' output, not in tests.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _mnist_standin as standin  # noqa: E402
import step_pairs  # noqa: E402
import trainer_vs_loop  # noqa: E402


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    standin.write_mnist_standin(root, train_size=512, test_size=64, seed=0)
    return root


def test_trainer_vs_loop_prints_every_run_and_both_ratios(
    mnist_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--root", str(mnist_root), "--max-batches", "2", "--repeats", "2"]
    assert trainer_vs_loop.main(args) == 0
    out = capsys.readouterr().out
    for run in ("tutorial", "bare", "trainer", "trainer-torch-adam"):
        assert len(re.findall(rf"^ *{run}: +\d+\.\d+ s", out, re.MULTILINE)) == 2
    for label in ("best", "median"):
        assert re.search(rf"^ *{label}: tutorial \d", out, re.MULTILINE)
    assert len(re.findall(r"trainer / tutorial = \d\.\d{3}", out)) == 2
    assert len(re.findall(r"trainer / bare += \d+\.\d{3}", out)) == 2
    assert re.search(r"^targets (met|NOT met) \(best times;", out, re.MULTILINE)


def test_step_pairs_prints_a_ratio_per_pair(
    mnist_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert step_pairs.main(["--root", str(mnist_root), "--max-batches", "2"]) == 0
    out = capsys.readouterr().out
    for pair in ("same", "fused-adam", "gather"):
        assert re.search(rf"^ *{pair}: B/A = \d+\.\d{{3}}", out, re.MULTILINE)


@pytest.mark.parametrize("script", [trainer_vs_loop, step_pairs], ids=lambda m: m.__name__)
def test_a_missing_mnist_is_reported(
    script: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert script.main(["--root", str(tmp_path)]) == 1
    assert "MNIST not found" in capsys.readouterr().err
