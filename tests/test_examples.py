"""The examples in ``examples/``: each ``main()`` in smoke mode, and their parts against references.

The MNIST examples run on a generated MNIST-format stand-in (always) and on the real MNIST in
the CI machine's data folder beside the repository, passed explicitly (skipped when absent).
The sine example's two procedures are checked step for step against the tutorial's loop
written out by hand.
"""

from __future__ import annotations

import re
import struct
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from rnnkit import Seq2SeqRegressor, SequenceClassifier, Trainer
from rnnkit.data import image_sequences, next_step
from rnnkit.data import sine_wave as sine_series

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import _mnist_standin as standin  # noqa: E402
import mnist_birnn  # noqa: E402
import mnist_rnn  # noqa: E402
import sine_wave  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# The CI machine keeps MNIST beside the repository; the examples never look there themselves.
CI_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_mnist = pytest.mark.skipif(not standin.has_mnist(CI_MNIST), reason=f"no MNIST in {CI_MNIST}")


@pytest.fixture(scope="module")
def standin_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return standin.write_mnist_standin(tmp_path_factory.mktemp("data"), seed=0)


def _summary(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("summary: ")]
    assert len(lines) == 1, output
    return lines[0]


def _field(summary: str, name: str) -> str:
    match = re.search(rf"\b{name}=(\S+)", summary)
    assert match is not None, summary
    return match.group(1)


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG_MAGIC


# -- the stand-in ---------------------------------------------------------------------------


def test_standin_is_read_by_torchvision_as_mnist(tmp_path: Path) -> None:
    from torchvision.datasets import MNIST

    standin.write_mnist_standin(tmp_path, train_size=50, test_size=20, seed=3)
    train = MNIST(str(tmp_path), train=True, download=False)
    test = MNIST(str(tmp_path), train=False, download=False)
    assert train.data.shape == (50, 28, 28)
    assert test.data.shape == (20, 28, 28)
    assert train.data.dtype == torch.uint8
    assert torch.bincount(train.targets, minlength=10).tolist() == [5] * 10
    raw = (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").read_bytes()
    assert struct.unpack(">iiii", raw[:16]) == (0x803, 50, 28, 28)
    assert torch.equal(
        train.data[7],
        torch.frombuffer(bytearray(raw[16 + 7 * 784 :][:784]), dtype=torch.uint8).view(28, 28),
    )


def test_standin_is_deterministic_per_seed(tmp_path: Path) -> None:
    files = [
        standin.write_mnist_standin(tmp_path / name, seed=seed)
        / "MNIST"
        / "raw"
        / "t10k-images-idx3-ubyte"
        for name, seed in (("a", 1), ("b", 1), ("c", 2))
    ]
    first, again, other = (f.read_bytes() for f in files)
    assert first == again
    assert first != other


def test_standin_rejects_too_few_digits(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one digit per class"):
        standin.write_mnist_standin(tmp_path, train_size=9)


def test_standin_digits_are_learnable(standin_root: Path) -> None:
    """A small GRU learns the stand-in well above chance (10%), so smoke runs train something."""
    from torchvision.datasets import MNIST

    train = image_sequences(MNIST(str(standin_root), train=True))
    test = image_sequences(MNIST(str(standin_root), train=False))
    torch.manual_seed(0)
    model = SequenceClassifier(28, 10, 32, cell="gru")
    trainer = Trainer(max_epochs=6, batch_size=32, lr=1e-2, seed=0, progress=False)
    trainer.fit(model, train)
    assert trainer.evaluate(model, test)["accuracy"] > 0.5


def test_resolve_prefers_the_given_folder(standin_root: Path, tmp_path: Path) -> None:
    source = standin.resolve_mnist_root(standin_root, download=False, smoke=False, scratch=tmp_path)
    assert source == standin.MnistSource(standin_root, standin=False)


def test_resolve_without_data_fails_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"MNIST/raw.*--download.*--smoke"):
        standin.resolve_mnist_root(tmp_path / "none", download=False, smoke=False, scratch=tmp_path)


def test_resolve_smoke_without_data_writes_the_standin(tmp_path: Path) -> None:
    source = standin.resolve_mnist_root(
        tmp_path / "none", download=False, smoke=True, scratch=tmp_path
    )
    assert source.standin
    assert source.root.is_relative_to(tmp_path)
    assert standin.has_mnist(source.root)


def test_resolve_download_uses_the_given_folder(tmp_path: Path) -> None:
    source = standin.resolve_mnist_root(tmp_path / "d", download=True, smoke=True, scratch=tmp_path)
    assert source == standin.MnistSource(tmp_path / "d", standin=False)


# -- the MNIST examples -----------------------------------------------------------------------


def test_mnist_rnn_smoke_on_standin(
    standin_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = mnist_rnn.main(data_dir=standin_root, out=tmp_path, smoke=True)
    out = capsys.readouterr().out
    summary = _summary(out)
    assert len(run.test_accuracy) == mnist_rnn.SMOKE_EPOCHS
    assert all(0.0 <= acc <= 1.0 for acc in run.test_accuracy)
    assert float(_field(summary, "test_accuracy")) == pytest.approx(run.test_accuracy[-1], abs=5e-5)
    assert _field(summary, "cell") == "rnn"
    assert _field(summary, "data") == "mnist"  # a folder given by the user is taken as MNIST
    assert float(_field(summary, "tutorial_loop_sec_per_epoch")) > 0
    assert out.count("test_accuracy=") == mnist_rnn.SMOKE_EPOCHS + 1
    assert _is_png(tmp_path / "mnist_rnn_rnn.png")


def test_mnist_rnn_constant_schedule_keeps_the_default_plot(
    standin_root: Path, tmp_path: Path
) -> None:
    mnist_rnn.main(
        data_dir=standin_root,
        out=tmp_path,
        smoke=True,
        lr_schedule="constant",
        time_tutorial_loop=False,
    )
    assert _is_png(tmp_path / "mnist_rnn_rnn_constant_lr.png")
    assert not (tmp_path / "mnist_rnn_rnn.png").exists()  # the cosine run's plot is not replaced


def test_mnist_rnn_epoch_report_matches_evaluate(standin_root: Path) -> None:
    """The printed per-epoch test accuracy is the Trainer's evaluation of the final model."""
    source = standin.MnistSource(standin_root, standin=True)
    data = mnist_rnn.load_mnist(source, download=False, smoke=True)
    run = mnist_rnn.MnistRun("mnist_rnn", "gru", "mean", bidirectional=False, standin=True)
    model = mnist_rnn.train_classifier(
        run, data, hidden_size=16, epochs=2, batch_size=64, lr=1e-2, seed=0, device="cpu"
    )
    expected = Trainer(progress=False, batch_size=64).evaluate(model, data[1])["accuracy"]
    assert run.test_accuracy[-1] == pytest.approx(expected)
    assert len(run.train_seconds) == 2


def test_tutorial_model_matches_the_tutorial_readout() -> None:
    """The timing baseline is the tutorial's model: rnnkit's ``output_last`` classifier."""
    torch.manual_seed(0)
    baseline = mnist_rnn._TutorialRNN("rnn", 8, bidirectional=True)
    model = SequenceClassifier(
        28, 10, 8, bidirectional=True, nonlinearity="relu", readout="output_last"
    )
    model.encoder.rnn.load_state_dict(baseline.rnn.state_dict())
    model.head.load_state_dict(baseline.linear.state_dict())
    x = torch.rand(3, 28, 28)
    torch.testing.assert_close(model(x), baseline(x))


def test_mnist_birnn_smoke_on_standin(
    standin_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = mnist_birnn.main(
        data_dir=standin_root, out=tmp_path, smoke=True, time_tutorial_loop=False
    )
    summary = _summary(capsys.readouterr().out)
    assert [run.readout for run in runs] == ["last", "output_last"]
    assert all(run.bidirectional for run in runs)
    for run in runs:
        value = float(_field(summary, f"test_accuracy_{run.readout}"))
        assert value == pytest.approx(run.test_accuracy[-1], abs=5e-5)
    assert "tutorial_loop_sec_per_epoch" not in summary
    assert _is_png(tmp_path / "mnist_birnn_rnn.png")


@pytest.mark.mnist
@needs_mnist
def test_mnist_examples_smoke_on_real_mnist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = mnist_rnn.main(data_dir=CI_MNIST, out=tmp_path, smoke=True, time_tutorial_loop=False)
    assert _field(_summary(capsys.readouterr().out), "data") == "mnist"
    assert run.test_accuracy[-1] > 0.0
    runs = mnist_birnn.main(data_dir=CI_MNIST, out=tmp_path, smoke=True, time_tutorial_loop=False)
    assert len(runs) == 2
    assert _is_png(tmp_path / "mnist_birnn_rnn.png")


def test_mnist_clis_pass_their_flags(standin_root: Path, tmp_path: Path) -> None:
    common = ["--smoke", "--data-dir", str(standin_root), "--no-tutorial-loop", "--epochs", "1"]
    options = ["--cell", "gru", "--hidden-size", "8", "--seed", "1", "--out", str(tmp_path)]
    run = mnist_rnn.cli([*common, *options, "--readout", "mean"])
    assert (run.cell, run.readout, len(run.test_accuracy)) == ("gru", "mean", 1)
    assert run.tutorial_loop_seconds is None
    runs = mnist_birnn.cli([*common, *options, "--readout", "output_last"])
    assert [(r.cell, r.readout, r.bidirectional) for r in runs] == [("gru", "output_last", True)]


@pytest.mark.parametrize("module", [mnist_rnn, mnist_birnn, sine_wave])
def test_examples_accept_the_docs_build_flags(module: object, tmp_path: Path) -> None:
    args = module.parse_args(["--smoke", "--out", str(tmp_path)])  # type: ignore[attr-defined]
    assert args.smoke
    assert args.out == str(tmp_path)


# -- the sine example -------------------------------------------------------------------------


def _tutorial_loop(seed: int, epochs: int, noise: float | None) -> torch.Tensor:
    """The tutorial's training and test written out (plus, with noise, rnnkit's changes)."""
    torch.manual_seed(seed)
    rnn, linear = nn.RNN(1, 16, batch_first=True), nn.Linear(16, 1)
    params = [*rnn.parameters(), *linear.parameters()]
    optimizer = torch.optim.Adam(params, lr=0.01, fused=noise is not None)  # as the example
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    generator = torch.Generator().manual_seed(seed)
    data = torch.sin(torch.linspace(0, 10, 101, dtype=torch.float64)).float()
    inputs, target = data[:-1].view(1, 100, 1), data[1:].view(1, 100, 1)
    for _ in range(epochs):
        x = (
            inputs
            if noise is None
            else inputs + noise * torch.randn(inputs.shape, generator=generator)
        )
        loss = nn.functional.mse_loss(linear(rnn(x)[0]), target)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        if noise is not None:
            decay.step()
    x, h, predictions = torch.zeros(1, 1, 1), None, []
    with torch.no_grad():
        for _ in range(100):
            out, h = rnn(x, h)
            x = linear(out)
            predictions.append(x.item())
    return torch.tensor(predictions)


@pytest.mark.parametrize(("procedure", "fused"), [("tutorial", False), ("rnnkit", True)])
def test_sine_tutorial_procedure_uses_torchs_default_adam(procedure: str, fused: bool) -> None:
    """Fused and default Adam differ below the loop comparison's tolerance: check directly."""
    trainer = sine_wave.make_trainer(procedure, epochs=1, lr=0.01, noise=0.02, seed=0)  # type: ignore[arg-type]
    optimizer = trainer.configure_optimizer(Seq2SeqRegressor(1))
    assert isinstance(optimizer, torch.optim.Adam)
    assert bool(optimizer.defaults["fused"]) is fused
    assert optimizer.defaults["lr"] == 0.01


@pytest.mark.parametrize(("procedure", "noise"), [("tutorial", None), ("rnnkit", 0.02)])
def test_sine_procedures_match_hand_written_loops(procedure: str, noise: float | None) -> None:
    data = next_step(sine_series())
    run = sine_wave.run_one(
        procedure,  # type: ignore[arg-type]
        1,
        data,
        epochs=25,
        model_options={},
        lr=0.01,
        noise=0.02,
    )
    expected = _tutorial_loop(1, 25, noise)
    torch.testing.assert_close(run.predictions, expected, atol=1e-5, rtol=1e-4)
    truth = torch.sin(0.1 * torch.arange(1, 101))
    assert run.free_running_mse == pytest.approx(float(((expected - truth) ** 2).mean()), rel=1e-4)


def test_sine_smoke_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = sine_wave.main(seeds=[0, 1], out=tmp_path, smoke=True)
    summary = _summary(capsys.readouterr().out)
    assert [(r.procedure, r.seed) for r in runs] == [
        ("tutorial", 0),
        ("rnnkit", 0),
        ("tutorial", 1),
        ("rnnkit", 1),
    ]
    assert all(r.epochs == sine_wave.SMOKE_EPOCHS and r.predictions.shape == (100,) for r in runs)
    mse = [float(v) for v in _field(summary, "tutorial_mse").strip("[]").split(",")]
    assert mse == pytest.approx(
        [r.free_running_mse for r in runs if r.procedure == "tutorial"], abs=5e-5
    )
    assert _is_png(tmp_path / "sine_wave.png")


def test_sine_cli_passes_its_flags(tmp_path: Path) -> None:
    argv = [
        "--smoke",
        "--seeds",
        "3",
        "--procedure",
        "rnnkit",
        "--hidden-size",
        "8",
        "--device",
        "cpu",
    ]
    runs = sine_wave.cli([*argv, "--cell", "gru", "--out", str(tmp_path)])
    assert [(r.procedure, r.seed, r.epochs) for r in runs] == [
        ("rnnkit", 3, sine_wave.SMOKE_EPOCHS)
    ]
    assert _is_png(tmp_path / "sine_wave.png")


def test_mnist_rnn_runs_unchanged_under_torchrun(standin_root: Path, tmp_path: Path) -> None:
    import os
    import subprocess

    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(EXAMPLES / "mnist_rnn.py"),
        "--smoke",
        "--data-dir",
        str(standin_root),
        "--out",
        str(tmp_path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Only rank 0 prints: one line per epoch and one summary, not two of each.
    assert proc.stdout.count("summary: mnist_rnn") == 1, proc.stdout
    assert proc.stdout.count("epoch 1/") == 1, proc.stdout
    assert "tutorial_loop_sec_per_epoch" not in proc.stdout  # not timed beside other ranks
    assert _is_png(tmp_path / "mnist_rnn_rnn.png")


def test_sine_wave_refuses_zero_epochs_instead_of_running_the_default() -> None:
    with pytest.raises(SystemExit, match="--epochs takes a count >= 1, but got 0"):
        sine_wave.main(["rnnkit"], [0], epochs=0)
