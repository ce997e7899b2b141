"""Classify MNIST digits with a bidirectional RNN: the correct readout against ``out[:, -1, :]``
=============================================================================================

Same set-up as ``mnist_rnn.py`` (rows as steps, relu RNN with 128 hidden units per direction,
Adam 1e-3, batches of 128, 20 epochs) with ``bidirectional=True``, trained twice with the same
seed:

- ``readout="last"`` (rnnkit's default): the final state of each direction, i.e. the forward
  direction after row 28 concatenated with the backward direction after row 1 -- each has
  read the whole image;
- ``readout="output_last"``: the reference recipe's ``out[:, -1, :]`` (the reference
  tutorial's code, cited on :doc:`/results`). Its backward half is the backward direction's
  output at the last row, which has read only that one row (it starts
  there), so half of the features the classifier sees carry almost no information.

Both test-accuracy curves go into one plot. Run ``python examples/mnist_birnn.py --download``
(MNIST goes into ``./data``; see ``mnist_rnn.py`` for ``--data-dir`` and ``--smoke``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from _mnist_standin import resolve_mnist_root
from mnist_rnn import (
    SMOKE_EPOCHS,
    MnistRun,
    add_common_arguments,
    check_schedule,
    common_options,
    load_mnist,
    plot_accuracy,
    plot_suffix,
    time_loop,
    train_classifier,
)

from rnnkit.distributed import LaunchEnv
from rnnkit.models.readouts import READOUTS, Readout
from rnnkit.shapes import CellType

NAME = "mnist_birnn"


def summarize(runs: Sequence[MnistRun]) -> str:
    """The final one-line summary: each readout's final test accuracy, and the times."""
    first = runs[0]
    parts = [f"summary: {NAME} cell={first.cell} epochs={len(first.test_accuracy)}"]
    parts.append(f"lr_schedule={first.lr_schedule}")
    parts += [f"test_accuracy_{run.readout}={run.test_accuracy[-1]:.4f}" for run in runs]
    parts.append(f"sec_per_epoch={first.sec_per_epoch:.2f}")
    if first.tutorial_loop_seconds is not None:
        parts.append(f"tutorial_loop_sec_per_epoch={first.tutorial_loop_seconds:.2f}")
    parts.append(f"data={'standin' if first.standin else 'mnist'}")
    return " ".join(parts)


def main(
    cell: CellType = "rnn",
    hidden_size: int = 128,
    readouts: Sequence[Readout] = ("last", "output_last"),
    *,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "auto",
    data_dir: str | Path = "./data",
    download: bool = False,
    out: str | Path = "runs/mnist_birnn",
    smoke: bool = False,
    time_tutorial_loop: bool = True,
    lr_schedule: str = "cosine",
) -> list[MnistRun]:
    """Train the bidirectional classifier once per readout (same seed); print, plot, return.

    Args:
        cell: ``"rnn"`` (relu, the reference recipe's), ``"lstm"`` or ``"gru"``.
        hidden_size: Hidden units per direction (the reference recipe's 128).
        readouts: The readouts to compare, each trained from the same initial weights.
        epochs: Training epochs (the reference recipe's 20).
        batch_size: Sequences per batch (the reference recipe's 128).
        lr: Adam's learning rate (the reference recipe's 1e-3).
        seed: Seeds the weights and the data order (the same for every readout).
        device: ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"``.
        data_dir: A folder holding ``MNIST/raw`` (torchvision's layout).
        download: Fetch MNIST into ``data_dir`` through torchvision when missing.
        out: Folder for the accuracy plot (and the stand-in data of a smoke run).
        smoke: A few batches for two epochs, on the stand-in when no MNIST is found.
        time_tutorial_loop: Also time one epoch of the reference recipe's own loop
            (bidirectional).
        lr_schedule: ``"cosine"`` (rnnkit's default: decay to zero over the epochs) or
            ``"constant"`` (the reference recipe's).

    Returns:
        One run per readout, in the order given.
    """
    schedule = check_schedule(lr_schedule)  # before any data is read
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    source = resolve_mnist_root(data_dir, download=download, smoke=smoke, scratch=folder)
    data = load_mnist(source, download=download, smoke=smoke)
    epochs = min(epochs, SMOKE_EPOCHS) if smoke else epochs
    runs = []
    for readout in readouts:
        run = MnistRun(NAME, cell, readout, True, standin=source.standin, lr_schedule=schedule)
        train_classifier(
            run,
            data,
            hidden_size=hidden_size,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            device=device,
        )
        runs.append(run)
    launch = LaunchEnv.from_environ()
    if time_tutorial_loop and launch.world_size == 1:
        seconds = time_loop(source, runs[0], hidden_size, batch_size, device, smoke)
        for run in runs:
            run.tutorial_loop_seconds = seconds
    if launch.rank == 0:
        plot = folder / f"mnist_birnn_{cell}{plot_suffix(schedule)}.png"
        print(f"plot: {plot_accuracy(runs, plot, hidden_size)}")
        print(summarize(runs))
    return runs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; see ``--help``."""
    parser = argparse.ArgumentParser(
        description=(
            "The reference recipe's BiRNN on MNIST (see the docs' Results page), two readouts."
        )
    )
    add_common_arguments(parser, "runs/mnist_birnn")
    parser.add_argument("--readout", nargs="+", choices=READOUTS, default=["last", "output_last"])
    return parser.parse_args(argv)


def cli(argv: Sequence[str] | None = None) -> list[MnistRun]:
    """Run :func:`main` with the command line's options (``argv``: ``sys.argv[1:]`` if None)."""
    args = parse_args(argv)
    return main(
        args.cell,
        args.hidden_size,
        args.readout,
        **common_options(args),
    )


if __name__ == "__main__":
    cli()
