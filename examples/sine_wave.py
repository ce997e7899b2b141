"""Learn a sine wave one step ahead and generate it free-running from ``[0]``
==========================================================================

The data, model and optimizer are the reference recipe's (the reference tutorial's code, cited
on :doc:`/results`): ``S = sin(linspace(0, 10, 101))``, inputs
``X = S[:-1]`` and targets ``Y = S[1:]`` (one sequence of 100 steps), a one-layer tanh RNN with
16 hidden units and a linear head, Adam with learning rate 0.01. After training, the model
gets the single input ``[0]`` with a zero state and generates 100 steps, each prediction fed
back as the next input. The score is the mean squared error of those 100 predictions against
the true continuation ``sin(0.1·k)``, k = 1..100 (the grid the model was trained on).

Two procedures are run for every seed:

- ``tutorial``: 3000 epochs (one step each) of teacher forcing at a constant learning rate, as
  written in the reference recipe, with torch's default Adam and torch's own RNN layer
  (``model.encoder.kernel = "torch"``, not rnnkit's CPU kernel) as the recipe has them. Its
  free-running result depends on the seed: for some seeds it generates the sine, for others it
  drifts off or settles on a constant.
- ``rnnkit`` (the default procedure): the same data, model and optimizer (the Trainer's
  ``"adam"``: torch's Adam with ``fused=True``) with two changes.
  Gaussian noise (standard deviation 0.02) is added to the inputs, not the targets, of every
  training step, so the model learns to pull a slightly-off trajectory back onto the sine --
  which is what happens when it is fed its own predictions. And the learning rate decays to
  zero along a cosine, so training ends in a minimum instead of wherever Adam's late spikes
  left the weights (a ``tutorial`` run can be at a teacher-forced loss of 1e-5 and still generate
  a constant).

Run ``python examples/sine_wave.py`` (both procedures, seeds 0-4, a couple of minutes on a
CPU); ``--procedure tutorial`` or ``--procedure rnnkit`` runs one; ``--smoke`` runs a few
epochs of each, a quick check that everything runs. Prints one line per run and a final
``summary:`` line, and saves ``sine_wave.png`` (truth as a line, the input as a black dot, the
predictions as red dots, as in the reference tutorial) into ``--out``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from _input_noise import InputNoiseTrainer
from torch import Tensor

from rnnkit import Seq2SeqRegressor, Trainer
from rnnkit.data import SequenceDataset, next_step, sine_wave
from rnnkit.shapes import CellType

Procedure = Literal["tutorial", "rnnkit"]
PROCEDURES: tuple[Procedure, ...] = get_args(Procedure)
TUTORIAL_EPOCHS = 3000
RNNKIT_EPOCHS = 3000
SMOKE_EPOCHS = 20
THRESHOLD = 0.01


@dataclass(frozen=True)
class SineRun:
    """One trained model's free-running result.

    ``train_loss`` is the last epoch's teacher-forced loss (on the noisy inputs, for rnnkit's
    procedure); ``seconds`` the training time.

    Shapes:
        - ``predictions``: ``(steps,)``, the generated values for t = 0.1, 0.2, ...
    """

    procedure: Procedure
    seed: int
    epochs: int
    free_running_mse: float
    train_loss: float
    seconds: float
    predictions: Tensor

    @property
    def passed(self) -> bool:
        """Whether the free-running MSE is at most :data:`THRESHOLD`."""
        return self.free_running_mse <= THRESHOLD

    def report(self) -> str:
        """One line with the run's figures."""
        return (
            f"procedure={self.procedure} seed={self.seed} epochs={self.epochs} "
            f"free_running_mse={self.free_running_mse:.4f} train_loss={self.train_loss:.2e} "
            f"{'ok' if self.passed else 'FAILED'} sec={self.seconds:.1f}"
        )


def make_trainer(
    procedure: Procedure, epochs: int, lr: float, noise: float, seed: int, device: str = "cpu"
) -> Trainer:
    """The Trainer of a procedure: the reference recipe's or rnnkit's (noise, cosine decay)."""
    options: dict[str, Any] = {"max_epochs": epochs, "batch_size": 1, "lr": lr, "seed": seed}
    options.update(progress=False, metrics=[], device=device)
    if procedure == "tutorial":

        def torch_adam(params: Any) -> torch.optim.Optimizer:
            return torch.optim.Adam(params, lr=lr)  # the reference recipe's: torch's default Adam

        return Trainer(optimizer=torch_adam, **options)

    def cosine(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)

    return InputNoiseTrainer(noise_std=noise, noise_seed=seed, scheduler=cosine, **options)


def free_run(model: Seq2SeqRegressor, steps: int) -> Tensor:
    """Generate ``steps`` values from the single input ``[0]`` and a zero state.

    Shapes:
        - returns: ``(steps,)``.
    """
    prime = torch.zeros(1, 1, 1, device=model.head.weight.device)
    predictions, _ = model.generate(prime, steps)
    return predictions.flatten().cpu()


def run_one(
    procedure: Procedure,
    seed: int,
    data: SequenceDataset,
    *,
    epochs: int,
    model_options: dict[str, Any],
    lr: float,
    noise: float,
    device: str = "cpu",
) -> SineRun:
    """Train one model with one procedure and seed, and score its free-running generation."""
    torch.manual_seed(seed)
    model = Seq2SeqRegressor(1, **model_options)
    if procedure == "tutorial":
        model.encoder.kernel = "torch"  # the reference recipe's nn.RNN arithmetic, to the last bit
    started = time.perf_counter()
    history = make_trainer(procedure, epochs, lr, noise, seed, device).fit(model, data)
    seconds = time.perf_counter() - started
    assert data.y is not None
    truth = data.y.flatten()
    predictions = free_run(model, truth.numel())
    mse = float(torch.mean((predictions - truth) ** 2))
    return SineRun(procedure, seed, epochs, mse, float(history[-1]["loss"]), seconds, predictions)


def plot_runs(runs: Sequence[SineRun], series: Tensor, path: Path) -> Path:
    """Draw every run against the truth, one panel each (rows: seeds, columns: procedures).

    Shapes:
        - ``series``: ``(T,)``, the whole sine ``S`` (its first value is the input).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    procedures = list(dict.fromkeys(run.procedure for run in runs))
    seeds = list(dict.fromkeys(run.seed for run in runs))
    figure = Figure(figsize=(4.2 * len(procedures), 1.9 * len(seeds)), dpi=80)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(seeds), len(procedures), squeeze=False, sharex=True, sharey=True)
    t = 0.1 * torch.arange(series.numel())
    for run in runs:
        ax = axes[seeds.index(run.seed)][procedures.index(run.procedure)]
        ax.plot(t, series, color="b", label="sine")
        ax.scatter(t[:1], series[:1], color="black", s=10, label="input", zorder=3)
        ax.scatter(t[1:], run.predictions, color="red", s=4, label="predictions", zorder=2)
        ax.set_title(
            f"{run.procedure}, seed {run.seed}: MSE {run.free_running_mse:.4f}", fontsize=9
        )
        ax.set_ylim(-2.0, 2.0)
    axes[0][0].legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def summarize(runs: Sequence[SineRun]) -> str:
    """The final one-line summary: per procedure, each seed's MSE, the worst, and passes."""
    parts = [
        "summary: sine_wave",
        f"seeds={','.join(str(s) for s in dict.fromkeys(r.seed for r in runs))}",
    ]
    for procedure in dict.fromkeys(run.procedure for run in runs):
        mine = [run for run in runs if run.procedure == procedure]
        values = ",".join(f"{run.free_running_mse:.4f}" for run in mine)
        passed = sum(run.passed for run in mine)
        worst = max(run.free_running_mse for run in mine)
        parts.append(f"{procedure}_mse=[{values}] {procedure}_max={worst:.4f}")
        parts.append(f"{procedure}_passed={passed}/{len(mine)}")
    parts.append(f"sec={sum(run.seconds for run in runs):.1f}")
    return " ".join(parts)


def main(
    procedures: Sequence[Procedure] = PROCEDURES,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    *,
    epochs: int | None = None,
    cell: CellType = "rnn",
    hidden_size: int = 16,
    lr: float = 0.01,
    noise: float = 0.02,
    device: str = "cpu",
    out: str | Path = "runs/sine_wave",
    smoke: bool = False,
) -> list[SineRun]:
    """Train and score every procedure for every seed; print the results and save the plot.

    Args:
        procedures: ``"rnnkit"`` and/or ``"tutorial"``.
        seeds: One model per seed and procedure (the seed fixes weights and noise).
        epochs: Epochs (= optimizer steps: one sequence, batch size 1) for every procedure;
            ``None``: 3000 for both (the reference recipe's budget).
        cell: ``"rnn"`` (the reference recipe's), ``"lstm"`` or ``"gru"``.
        hidden_size: Hidden units (the reference recipe's 16).
        lr: Adam's (initial) learning rate (the reference recipe's 0.01).
        noise: Standard deviation of rnnkit's input noise.
        device: Where to train (``"cpu"``, the default, or ``"cuda"``).
        out: Folder for ``sine_wave.png``.
        smoke: A quick check that everything runs: 20 epochs per procedure.

    Returns:
        One :class:`SineRun` per procedure and seed.
    """
    if epochs is not None and epochs < 1:
        raise SystemExit(f"--epochs takes a count >= 1, but got {epochs}")
    series = sine_wave()
    data = next_step(series)
    options: dict[str, Any] = {"hidden_size": hidden_size, "cell": cell}
    runs = []
    for seed in seeds:
        for procedure in procedures:
            default = TUTORIAL_EPOCHS if procedure == "tutorial" else RNNKIT_EPOCHS
            n = SMOKE_EPOCHS if smoke else default if epochs is None else epochs
            run = run_one(
                procedure,
                seed,
                data,
                epochs=n,
                model_options=options,
                lr=lr,
                noise=noise,
                device=device,
            )
            print(run.report(), flush=True)
            runs.append(run)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"plot: {plot_runs(runs, series, folder / 'sine_wave.png')}")
    print(summarize(runs))
    return runs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; see ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--procedure", nargs="+", choices=PROCEDURES, default=list(PROCEDURES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--epochs", type=int, default=None, help="default: 3000 (the reference recipe's)"
    )
    parser.add_argument("--cell", choices=("rnn", "lstm", "gru"), default="rnn")
    parser.add_argument("--hidden-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--noise", type=float, default=0.02)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--out", default="runs/sine_wave")
    parser.add_argument("--smoke", action="store_true", help="20 epochs per run: a quick check")
    return parser.parse_args(argv)


def cli(argv: Sequence[str] | None = None) -> list[SineRun]:
    """Run :func:`main` with the command line's options (``argv``: ``sys.argv[1:]`` if None).

    Uses one CPU thread: the model is tiny, and more threads only add synchronisation.
    """
    args = parse_args(argv)
    torch.set_num_threads(1)
    return main(
        args.procedure,
        args.seeds,
        epochs=args.epochs,
        cell=args.cell,
        hidden_size=args.hidden_size,
        lr=args.lr,
        noise=args.noise,
        device=args.device,
        out=args.out,
        smoke=args.smoke,
    )


if __name__ == "__main__":
    cli()
