"""Classify MNIST digits read row by row, as 28 steps of 28 pixels
===============================================================

The set-up is the reference recipe's (the reference tutorial's code, cited on
:doc:`/results`), through rnnkit's public API: rows as time steps
(:func:`rnnkit.data.image_sequences`, pixels scaled to [0, 1] like ``ToTensor``), a one-layer
RNN with relu and 128 hidden units and a linear head on the last state
(:class:`rnnkit.SequenceClassifier`), Adam with learning rate 1e-3, batches of 128, 20 epochs,
the test accuracy after every epoch (:class:`rnnkit.Trainer` with the test set as validation
data), and the accuracy curve saved as a PNG (:meth:`rnnkit.History.plot`).

It also times one epoch of the reference recipe's own training loop (``DataLoader`` over
``MNIST(transform=ToTensor())``, same model, same batch size) on the same machine, and
prints both times per epoch.

Run ``python examples/mnist_rnn.py --download``: torchvision fetches MNIST into ``./data``
(``--data-dir`` picks another folder; one that already holds ``MNIST/raw`` needs no
``--download``). ``--cell lstm`` or ``--cell gru`` swaps the cell (tanh: relu applies to the
plain RNN only). ``--smoke`` trains a few batches, on MNIST when ``--data-dir`` holds it and
otherwise on a generated MNIST-format stand-in.

It runs unchanged under ``torchrun --nproc-per-node 2 examples/mnist_rnn.py ...``: the Trainer
then trains with DistributedDataParallel, ``--batch-size`` is per process (the global batch is
``batch_size × world size``), only rank 0 prints and saves the plot, and the reference
recipe's loop is not timed (its timing would compete with the other processes).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from _mnist_standin import MnistSource, resolve_mnist_root
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler

from rnnkit import Callback, History, SequenceClassifier, Trainer
from rnnkit.data import SequenceDataset, image_sequences
from rnnkit.distributed import LaunchEnv
from rnnkit.models.readouts import READOUTS, Readout
from rnnkit.shapes import CellType

SMOKE_TRAIN, SMOKE_TEST, SMOKE_EPOCHS = 256, 256, 2
LR_SCHEDULES = ("cosine", "constant")


@dataclass
class MnistRun:
    """One training run's figures.

    Attributes:
        name: The example's name (``mnist_rnn`` or ``mnist_birnn``).
        cell: The recurrent cell.
        readout: The classifier's readout.
        bidirectional: Whether the layer runs both ways.
        test_accuracy: The test accuracy after every epoch.
        train_seconds: The training time of every epoch (validation excluded).
        tutorial_loop_seconds: One epoch of the reference recipe's own loop, or ``None`` if
            not timed.
        standin: Whether the data was the generated stand-in rather than MNIST.
        lr_schedule: ``"cosine"`` (rnnkit's default) or ``"constant"`` (the reference
            recipe's).
    """

    name: str
    cell: str
    readout: str
    bidirectional: bool
    test_accuracy: list[float] = field(default_factory=list)
    train_seconds: list[float] = field(default_factory=list)
    tutorial_loop_seconds: float | None = None
    standin: bool = False
    lr_schedule: str = "cosine"

    @property
    def sec_per_epoch(self) -> float:
        """The median training time per epoch."""
        return statistics.median(self.train_seconds)

    def summary(self) -> str:
        """The final one-line summary with the run's figures."""
        loop = self.tutorial_loop_seconds
        parts = [
            f"summary: {self.name} cell={self.cell} readout={self.readout}",
            f"lr_schedule={self.lr_schedule}",
            f"epochs={len(self.test_accuracy)} test_accuracy={self.test_accuracy[-1]:.4f}",
            f"sec_per_epoch={self.sec_per_epoch:.2f}",
            "" if loop is None else f"tutorial_loop_sec_per_epoch={loop:.2f}",
            f"data={'standin' if self.standin else 'mnist'}",
        ]
        return " ".join(part for part in parts if part)


class EpochReport(Callback):
    """Print every epoch's test accuracy and time, and keep them in a :class:`MnistRun`.

    The time is the training part of the epoch only (first batch start to last batch end),
    comparable with that of the reference recipe's loop, which does not evaluate.
    """

    def __init__(self, run: MnistRun, epochs: int) -> None:
        self.run = run
        self.epochs = epochs
        self._started = self._last = 0.0

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        """Start the epoch's clock."""
        self._started = self._last = time.perf_counter()

    def on_batch_end(self, trainer: Any, batch_idx: int, outputs: dict[str, Any]) -> None:
        """Note when the latest training batch finished."""
        self._last = time.perf_counter()

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        """Record and print the epoch's figures."""
        seconds = self._last - self._started
        self.run.test_accuracy.append(logs["val_accuracy"])
        self.run.train_seconds.append(seconds)
        logs["train_time"] = seconds
        if not trainer.is_global_zero:
            return
        print(
            f"{self.run.name} readout={self.run.readout} epoch {epoch + 1}/{self.epochs} "
            f"loss={logs['loss']:.4f} test_accuracy={logs['val_accuracy']:.4f} "
            f"sec={seconds:.1f}",
            flush=True,
        )


def load_mnist(source: MnistSource, *, download: bool, smoke: bool) -> tuple[SequenceDataset, ...]:
    """MNIST's training and test sets as row sequences (a small slice of each when ``smoke``).

    Shapes:
        - each dataset: ``x`` ``(N, 28, 28)`` (``uint8``, scaled to [0, 1] per batch), ``y``
          ``(N,)``.
    """
    from torchvision.datasets import MNIST

    root = str(source.root)
    train = image_sequences(MNIST(root, train=True, download=download))
    test = image_sequences(MNIST(root, train=False, download=download))
    if smoke:
        train = train.subset(torch.arange(min(SMOKE_TRAIN, len(train))))
        test = test.subset(torch.arange(min(SMOKE_TEST, len(test))))
    return train, test


def tutorial_loop_seconds(
    root: Path,
    *,
    cell: CellType,
    hidden_size: int,
    bidirectional: bool,
    batch_size: int,
    device: str,
    max_batches: int | None = None,
) -> float:
    """Time one training epoch of the reference recipe's loop (``DataLoader`` + ``ToTensor``).

    The model is the reference recipe's class written out (recurrent layer built by hand with its
    ``h0``, ``out[:, -1, :]``, linear layer), with the given cell; relu for the plain RNN.
    """
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    dataset = datasets.MNIST(str(root), train=True, transform=transforms.ToTensor())
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
    model = _TutorialRNN(cell, hidden_size, bidirectional).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_f = nn.CrossEntropyLoss()
    started = time.perf_counter()
    for step, (images, labels) in enumerate(loader):
        if max_batches is not None and step >= max_batches:
            break
        loss = loss_f(model(images.squeeze(1).to(dev)), labels.to(dev))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


class _TutorialRNN(nn.Module):
    """The reference recipe's classifier, written as the recipe has it (the timing baseline)."""

    def __init__(self, cell: CellType, hidden_size: int, bidirectional: bool) -> None:
        super().__init__()
        options: dict[str, Any] = {"batch_first": True, "bidirectional": bidirectional}
        if cell == "rnn":
            options["nonlinearity"] = "relu"
        layer = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = layer(28, hidden_size, 1, **options)
        self.linear = nn.Linear((2 if bidirectional else 1) * hidden_size, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.linear(out[:, -1, :])  # type: ignore[no-any-return]


def plot_suffix(schedule: str) -> str:
    """The plot file's suffix: none for the default schedule, ``_constant_lr`` otherwise."""
    return "" if schedule == "cosine" else f"_{schedule}_lr"


def cosine_decay(epochs: int) -> Callable[[torch.optim.Optimizer], LRScheduler]:
    """The learning rate decayed to zero along a cosine over ``epochs`` (stepped per epoch).

    Adam at the reference recipe's constant 1e-3 never settles: the test accuracy swings by up
    to a point or more from one epoch to the next, so the 20th epoch's figure is partly luck.
    Decaying the rate lets the last epochs settle (the same finding as for the sine wave).
    """

    def build(optimizer: torch.optim.Optimizer) -> LRScheduler:
        return CosineAnnealingLR(optimizer, T_max=epochs)

    return build


def train_classifier(
    run: MnistRun,
    data: tuple[SequenceDataset, ...],
    *,
    hidden_size: int,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: str,
) -> SequenceClassifier:
    """Build the classifier for ``run`` and train it, the test set as validation data."""
    train, test = data
    torch.manual_seed(seed)
    cell: Any = run.cell
    readout: Any = run.readout
    model = SequenceClassifier(
        28,
        10,
        hidden_size,
        cell=cell,
        bidirectional=run.bidirectional,
        nonlinearity="relu" if run.cell == "rnn" else "tanh",
        readout=readout,
    )
    trainer = Trainer(
        max_epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        scheduler=cosine_decay(epochs) if run.lr_schedule == "cosine" else None,
        seed=seed,
        device=device,
        progress=False,
        callbacks=[EpochReport(run, epochs)],
    )
    trainer.fit(model, train, test)
    return model


def accuracy_history(runs: Sequence[MnistRun]) -> History:
    """The runs' test-accuracy curves as one :class:`rnnkit.History` (one column per run)."""
    records = []
    for epoch in range(max(len(run.test_accuracy) for run in runs)):
        record: dict[str, float] = {"epoch": epoch + 1}
        for run in runs:
            if epoch < len(run.test_accuracy):
                record[f"test accuracy, readout={run.readout}"] = run.test_accuracy[epoch]
        records.append(record)
    return History(records)


def plot_accuracy(runs: Sequence[MnistRun], path: Path, hidden_size: int) -> Path:
    """Save the runs' test-accuracy curves in one PNG, through :meth:`rnnkit.History.plot`."""
    history = accuracy_history(runs)
    keys = [key for key in history.keys if key != "epoch"]
    run = runs[0]
    data = " (stand-in data)" if run.standin else ""
    title = f"{run.name}: cell={run.cell}, hidden {hidden_size}{data}"
    return history.plot(keys, path=path, title=title)


def main(
    cell: CellType = "rnn",
    hidden_size: int = 128,
    readout: Readout = "last",
    *,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "auto",
    data_dir: str | Path = "./data",
    download: bool = False,
    out: str | Path = "runs/mnist_rnn",
    smoke: bool = False,
    time_tutorial_loop: bool = True,
    lr_schedule: str = "cosine",
) -> MnistRun:
    """Train the reference recipe's MNIST RNN with rnnkit; print, plot and return its figures.

    Args:
        cell: ``"rnn"`` (relu, the reference recipe's), ``"lstm"`` or ``"gru"``.
        hidden_size: Hidden units (the reference recipe's 128).
        readout: ``"last"`` (the final state) or ``"mean"``, ``"max"``, ``"output_last"``.
        epochs: Training epochs (the reference recipe's 20).
        batch_size: Sequences per batch (the reference recipe's 128).
        lr: Adam's learning rate (the reference recipe's 1e-3).
        seed: Seeds the weights and the data order.
        device: ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"``.
        data_dir: A folder holding ``MNIST/raw`` (torchvision's layout).
        download: Fetch MNIST into ``data_dir`` through torchvision when missing.
        out: Folder for the accuracy plot (and the stand-in data of a smoke run).
        smoke: A few batches for two epochs, on the stand-in when no MNIST is found.
        time_tutorial_loop: Also time one epoch of the reference recipe's own loop.
        lr_schedule: ``"cosine"`` (rnnkit's default: decay to zero over the epochs) or
            ``"constant"`` (the reference recipe's).

    Returns:
        The run's figures.
    """
    schedule = check_schedule(lr_schedule)  # before any data is read
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    source = resolve_mnist_root(data_dir, download=download, smoke=smoke, scratch=folder)
    data = load_mnist(source, download=download, smoke=smoke)
    epochs = min(epochs, SMOKE_EPOCHS) if smoke else epochs
    run = MnistRun("mnist_rnn", cell, readout, False, standin=source.standin, lr_schedule=schedule)
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
    launch = LaunchEnv.from_environ()
    if time_tutorial_loop and launch.world_size == 1:
        run.tutorial_loop_seconds = time_loop(source, run, hidden_size, batch_size, device, smoke)
    if launch.rank == 0:
        plot = folder / f"mnist_rnn_{cell}{plot_suffix(schedule)}.png"
        print(f"plot: {plot_accuracy([run], plot, hidden_size)}")
        print(run.summary())
    return run


def check_schedule(lr_schedule: str) -> str:
    """``lr_schedule`` if it names a known schedule, else a :class:`ValueError`."""
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"`lr_schedule` must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
    return lr_schedule


def time_loop(
    source: MnistSource, run: MnistRun, hidden_size: int, batch_size: int, device: str, smoke: bool
) -> float:
    """One epoch of the reference recipe's loop for ``run``'s model (a smoke epoch's batches)."""
    smoke_batches = -(-SMOKE_TRAIN // batch_size)
    cell: Any = run.cell
    return tutorial_loop_seconds(
        source.root,
        cell=cell,
        hidden_size=hidden_size,
        bidirectional=run.bidirectional,
        batch_size=batch_size,
        device=device,
        max_batches=smoke_batches if smoke else None,
    )


def add_common_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    """The flags both MNIST examples share."""
    parser.add_argument("--data-dir", default="./data", help="a folder holding MNIST/raw")
    parser.add_argument("--download", action="store_true", help="fetch MNIST via torchvision")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--cell", choices=("rnn", "lstm", "gru"), default="rnn")
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=128, help="per process under torchrun")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--out", default=out, help="folder for the plots")
    parser.add_argument("--smoke", action="store_true", help="a few batches: a quick check")
    parser.add_argument(
        "--no-tutorial-loop",
        action="store_true",
        help="skip timing the reference recipe's own loop",
    )
    parser.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default="cosine",
        help="cosine: decay to zero over the epochs (default); constant: the reference recipe's",
    )


def common_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``main`` that come from :func:`add_common_arguments`' flags."""
    return {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "device": args.device,
        "data_dir": args.data_dir,
        "download": args.download,
        "out": args.out,
        "smoke": args.smoke,
        "time_tutorial_loop": not args.no_tutorial_loop,
        "lr_schedule": args.lr_schedule,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; see ``--help``."""
    parser = argparse.ArgumentParser(
        description="The reference recipe's MNIST RNN (see the docs' Results page), with rnnkit."
    )
    add_common_arguments(parser, "runs/mnist_rnn")
    parser.add_argument("--readout", choices=READOUTS, default="last")
    return parser.parse_args(argv)


def cli(argv: Sequence[str] | None = None) -> MnistRun:
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
