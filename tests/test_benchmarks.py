"""The benchmarks run (a few batches on a generated MNIST-format stand-in) and print figures.

Their timings are not asserted: speed targets live in the scripts' output, not in tests.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torchvision.datasets import MNIST

from rnnkit.data import image_sequences

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _interleave  # noqa: E402
import _mnist_standin as standin  # noqa: E402
import rnn_kernel  # noqa: E402
import step_pairs  # noqa: E402
import trainer_vs_loop  # noqa: E402
from _interleave import Interleaver  # noqa: E402


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    standin.write_mnist_standin(root, train_size=512, test_size=64, seed=0)
    return root


def test_trainer_vs_loop_sequential_prints_every_run_and_both_ratios(
    mnist_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--root", str(mnist_root), "--max-batches", "2", "--repeats", "2"]
    assert trainer_vs_loop.main([*args, "--method", "sequential"]) == 0
    out = capsys.readouterr().out
    for run in ("tutorial", "bare", "trainer", "trainer-torch"):
        assert len(re.findall(rf"^ *{run}: +\d+\.\d+ s", out, re.MULTILINE)) == 2
    for label in ("best", "median"):
        assert re.search(rf"^ *{label}: tutorial \d", out, re.MULTILINE)
    assert len(re.findall(r"trainer / tutorial = \d\.\d{3}", out)) == 2
    assert len(re.findall(r"trainer / bare += \d+\.\d{3}", out)) == 2
    assert re.search(r"^targets (met|NOT met) \(best times;", out, re.MULTILINE)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_trainer_vs_loop_runs_each_loop_with_the_chosen_cell(
    mnist_root: Path, capsys: pytest.CaptureFixture[str], cell: str
) -> None:
    args = ["--root", str(mnist_root), "--max-batches", "2", "--repeats", "1", "--cell", cell]
    assert trainer_vs_loop.main(args) == 0
    out = capsys.readouterr().out
    assert f"cell {cell}" in out
    target = trainer_vs_loop.TUTORIAL_TARGETS[cell]
    assert re.search(rf"trainer / tutorial = \d+\.\d{{3}}, .*\(target <= {target}\)", out)
    model, _ = trainer_vs_loop.tutorial_model(torch.device("cpu"), cell)
    assert isinstance(model.rnn, trainer_vs_loop.CELLS[cell])  # the loops train that layer too


def test_trainer_vs_loop_interleaved_is_the_cpu_default_and_prints_paired_ratios(
    mnist_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--root", str(mnist_root), "--max-batches", "3", "--repeats", "2", "--every", "1"]
    assert trainer_vs_loop.main(args) == 0
    out = capsys.readouterr().out
    assert "method interleaved" in out
    loops = r"(tutorial \d+\.\d+ s, bare \d+\.\d+ s|bare \d+\.\d+ s, tutorial \d+\.\d+ s)"
    fused = re.findall(rf"^  trainer \d+\.\d+ s, {loops}", out, re.M)  # in turn, both orders
    as_bare = re.findall(r"^  trainer-torch \d+\.\d+ s, bare-2 \d+\.\d+ s", out, re.M)
    assert len(fused) == 2
    assert fused[0].startswith("tutorial")
    assert fused[1].startswith("bare")
    assert len(as_bare) == 2
    ratios = (
        "trainer / tutorial",
        "trainer / bare",
        "trainer-torch / bare",
        "bare / tutorial",
    )
    for ratio in ratios:
        assert re.search(rf"{ratio} = \d+\.\d{{3}}, rounds \d+\.\d{{3}}-\d+\.\d{{3}}", out)
    assert re.search(r"^targets (met|NOT met) \(medians of the paired ratios;", out, re.M)


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


def _counted_steps(count: int, log: list[str], name: str) -> Iterator[None]:
    for _ in range(count):
        log.append(name)
        yield


def test_the_interleaver_runs_each_loop_in_turns_to_its_end() -> None:
    log: list[str] = []
    loops = {"a": _counted_steps(5, log, "a"), "b": _counted_steps(3, log, "b")}
    interleaver = Interleaver(loops, every=2)
    for batch_idx in range(4):  # the fit's batches: the loops run after batches 1 and 3
        log.append("fit")
        interleaver.on_batch_end(None, batch_idx, {})
    assert log == ["fit", "fit", "a", "a", "b", "b", "fit", "fit", "a", "a", "b"]
    seconds = interleaver.finish()
    assert log[11:] == ["a"]
    assert set(seconds) == {"a", "b"}


def test_an_interleaved_fit_reports_its_own_time_without_the_loops(
    mnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a clock that only the loops move, the Trainer's own time is 0."""
    clock = [0.0]
    for module in (trainer_vs_loop, _interleave):
        monkeypatch.setattr(module, "perf_counter", lambda: clock[0])

    def slow(runs: int) -> Iterator[None]:
        for _ in range(runs):
            clock[0] += 0.25
            yield

    data = image_sequences(MNIST(str(mnist_root), train=True, download=False), "rows")
    data = data.subset(torch.arange(4 * trainer_vs_loop.BATCH_SIZE))
    interleaver = Interleaver({"slow": slow(6)}, every=1)
    own = trainer_vs_loop.trainer_epoch(data, torch.device("cpu"), interleaver=interleaver)
    assert interleaver.total() == 1.0  # 4 batches, a run after each
    assert own == 0.0
    assert interleaver.finish() == {"slow": 1.5}  # the 2 runs left, after the fit


def test_rnn_kernel_prints_a_ratio_per_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert rnn_kernel.main(["--steps", "4", "--only", "mnist", "one-step"]) == 0
    assert rnn_kernel.main(["--steps", "4", "--only", "mnist", "--through", "forward"]) == 0
    out = capsys.readouterr().out
    assert "through run" in out
    assert "through forward" in out
    for shape in ("mnist", "one-step"):
        assert re.search(rf"^{shape} +\d+\.\d{{3}} +\d+\.\d{{3}} +\d+\.\d{{3}}$", out, re.M)
    assert "stacked-bi" not in out


def test_rnn_kernel_shapes_build_their_layers_and_batches() -> None:
    shape = rnn_kernel.SHAPES["stacked-bi"]
    torch.manual_seed(0)
    net = rnn_kernel.Net(shape)
    assert net.encoder.spec.num_layers == 2
    assert net.encoder.spec.bidirectional
    x, h0 = rnn_kernel.batches(shape, 1)[0]
    assert x.shape == (shape.batch, shape.steps, shape.input_size)
    assert h0 is None
    assert net(x, h0).dim() == 0
