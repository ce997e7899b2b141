"""One MNIST epoch three ways: the tutorial's loop, a bare loop, and ``Trainer.fit`` (twice).

The tutorial's model (an RNN with relu, hidden size 128, read row by row: L = 28, H_in = 28),
Adam with lr 1e-3 and batch size 128 on the real MNIST training set (``../shared/data`` next
to the repository, or ``--root``), timed in one run:

- tutorial: its own code: ``DataLoader(MNIST(transform=ToTensor()), batch_size=128,
  shuffle=True)``, ``images.squeeze(1)``, a hand-built ``h0`` moved to the device every call,
  ``out[:, -1, :]``, and ``loss.item()`` every 100 steps (its progress print, not printed);
- bare: the tutorial's network in plain torch (no rnnkit code at all) trained by a minimal
  loop over batches made beforehand (float tensors already on the device, shuffled once): the
  cost of the arithmetic alone, so trainer/bare is everything rnnkit adds (the shape checks
  on every call included);
- trainer: ``Trainer(max_epochs=1, batch_size=128).fit(model, image_sequences(MNIST(...)))``
  with the progress bar on (it draws when stderr is a terminal), timed from the call to its
  return (checks, set-up, per-batch gathering and conversion, metrics and callbacks included).
  Its ``optimizer="adam"`` is torch's Adam with ``fused=True``;
- trainer-torch-adam: the same with ``optimizer=lambda p: torch.optim.Adam(p, lr=1e-3)``, the
  default implementation the tutorial and the bare loop use: trainer-torch-adam/bare is the
  Trainer's own cost, without what its fused Adam saves.

The four are run ``--repeats`` times (default 7), interleaved (the order reversed every other
round), so that a slow spell of the machine hits all four alike. It prints every time, then
for each run its best (fastest) and median time, and the ratios trainer/tutorial (target
<= 0.5) and trainer/bare (target <= 1.05) of both. The targets are judged on the best times,
as :mod:`timeit` advises: on a shared machine the slower times measure the interference, not
the code. ``--max-batches N`` runs N batches of each, for a smoke test.

Usage: ``python benchmarks/trainer_vs_loop.py [--root DIR] [--max-batches N] [--threads N]
[--repeats N] [--device auto|cpu|cuda]``
"""

from __future__ import annotations

import gc
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from time import perf_counter
from typing import Any

import torch
import torch.nn.functional as F
from _mnist_args import mnist_parser, ready
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchvision.datasets import MNIST
from torchvision.transforms import ToTensor

from rnnkit.data import SequenceDataset, image_sequences
from rnnkit.models import SequenceClassifier
from rnnkit.trainer import Trainer

BATCH_SIZE = 128
LR = 1e-3
TUTORIAL_TARGET = 0.5
BARE_TARGET = 1.05


class TutorialRNN(nn.Module):
    """The tutorial's model, as it wrote it (``h0`` built and moved on every call)."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device
        self.rnn = nn.RNN(28, 128, num_layers=1, batch_first=True, nonlinearity="relu")
        self.linear = nn.Linear(128, 10)

    def forward(self, x: Tensor) -> Tensor:
        """Logits from the last step's output, as the tutorial computes them."""
        h0 = torch.zeros(1, x.size(0), 128).to(self.device)
        out, _ = self.rnn(x, h0)
        return self.linear(out[:, -1, :])  # type: ignore[no-any-return]


def _rnnkit_model(device: torch.device) -> SequenceClassifier:
    torch.manual_seed(1)
    return SequenceClassifier(28, 10, 128, nonlinearity="relu", readout="output_last").to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tutorial_epoch(root: Path, device: torch.device, max_batches: int | None) -> float:
    """The tutorial's training loop for one epoch (or ``max_batches``); seconds."""
    torch.manual_seed(1)
    model = TutorialRNN(device).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loss_f = nn.CrossEntropyLoss()
    start = perf_counter()
    dataset = MNIST(str(root), train=True, transform=ToTensor(), download=False)
    loader = DataLoader(dataset=dataset, batch_size=BATCH_SIZE, shuffle=True)
    model.train()
    for step, (images, labels) in enumerate(loader):
        if max_batches is not None and step >= max_batches:
            break
        images, labels = images.squeeze(1).to(device), labels.to(device)
        loss = loss_f(model(images), labels)
        optimizer.zero_grad()
        torch.autograd.backward(loss)
        optimizer.step()
        if step % 100 == 0:
            loss.item()  # the tutorial prints it here
    _sync(device)
    return perf_counter() - start


def premade_batches(
    data: SequenceDataset, device: torch.device, max_batches: int | None
) -> list[tuple[Tensor, Tensor]]:
    """The epoch's batches as float tensors on the device, in one shuffled order."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    batches = []
    for first in range(0, len(data), BATCH_SIZE):
        x, y, _ = data.batch(order[first : first + BATCH_SIZE])
        assert y is not None
        batches.append((x.to(device), y.to(device)))
    return batches if max_batches is None else batches[:max_batches]


def bare_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor) -> None:
    """One plain-torch training step: cross-entropy, backward, update, gradients dropped."""
    torch.autograd.backward(F.cross_entropy(model(x), y))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def bare_epoch(batches: list[tuple[Tensor, Tensor]], device: torch.device) -> float:
    """A minimal loop over premade batches with the plain-torch model; seconds."""
    torch.manual_seed(1)
    model = TutorialRNN(device).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    model.train()
    start = perf_counter()
    for x, y in batches:
        bare_step(model, optimizer, x, y)
    _sync(device)
    return perf_counter() - start


def _torch_adam(params: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=LR)


def trainer_epoch(data: SequenceDataset, device: torch.device, torch_adam: bool = False) -> float:
    """``Trainer.fit`` for one epoch with the progress bar on; seconds.

    With ``torch_adam`` the optimizer is torch's default Adam instead of the Trainer's fused one.
    """
    model = _rnnkit_model(device)
    trainer = Trainer(
        max_epochs=1,
        batch_size=BATCH_SIZE,
        optimizer=_torch_adam if torch_adam else "adam",
        lr=LR,
        device=device,
        progress=True,
    )
    start = perf_counter()
    history = trainer.fit(model, data)
    _sync(device)
    elapsed = perf_counter() - start
    print(f"  trainer: loss {history[0]['loss']:.4f}, accuracy {history[0]['accuracy']:.4f}")
    return elapsed


def warm_up(device: torch.device) -> None:
    """A few steps of the same network with either Adam, so no timed run pays one-off set-up."""
    x, y = (
        torch.rand(BATCH_SIZE, 28, 28, device=device),
        torch.zeros(BATCH_SIZE, dtype=torch.long, device=device),
    )
    for fused in (False, True):
        model = _rnnkit_model(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=LR, fused=fused)
        for _ in range(5):
            bare_step(model, optimizer, x, y)
    _sync(device)


def _minor_faults() -> int:
    """Minor page faults of this process so far (0 where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return 0
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


def _timed(name: str, run: Callable[[], float]) -> float:
    """Run once; print its time and the minor page faults it caused.

    A page fault is memory the C allocator handed back to the system and touched again; how
    many a run takes moves from run to run, and with it the time.
    """
    gc.collect()  # no run pays for the garbage of the one before
    faults = _minor_faults()
    seconds = run()
    print(f"{name:>18}: {seconds:8.2f} s  ({_minor_faults() - faults} minor page faults)")
    return seconds


def _rounds(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Each run's times over ``repeats`` rounds, interleaved, every other round reversed."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(repeats):
        print(f"round {round_ + 1}/{repeats}")
        names = list(runs) if round_ % 2 == 0 else list(reversed(runs))
        for name in names:
            times[name].append(_timed(name, runs[name]))
    return times


def _report(times: dict[str, list[float]]) -> bool:
    """Print the best and median times and their ratios; whether the best meet the targets."""
    met = True
    for label, pick in (("best", min), ("median", statistics.median)):
        tutorial, bare, trainer = (pick(times[name]) for name in ("tutorial", "bare", "trainer"))
        print(f"{label:>6}: tutorial {tutorial:.2f} s, bare {bare:.2f} s, trainer {trainer:.2f} s")
        print(f"  trainer / tutorial = {trainer / tutorial:.3f} (target <= {TUTORIAL_TARGET})")
        print(f"  trainer / bare     = {trainer / bare:.3f} (target <= {BARE_TARGET})")
        own = pick(times["trainer-torch-adam"]) / bare
        print(f"  trainer-torch-adam / bare = {own:.3f} (the Trainer's own cost, same optimizer)")
        if label == "best":
            met = trainer / tutorial <= TUTORIAL_TARGET and trainer / bare <= BARE_TARGET
    verdict = "met" if met else "NOT met"
    print(f"targets {verdict} (best times; trainer with its fused Adam, bare with torch's default)")
    return met


def main(argv: list[str] | None = None) -> int:
    parser = mnist_parser(__doc__.splitlines()[0])
    parser.add_argument("--max-batches", type=int, default=None, help="batches per run (smoke)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds")
    args = parser.parse_args(argv)
    if not ready(args):
        return 1
    device = Trainer(device=args.device, progress=False).device
    data = image_sequences(MNIST(str(args.root), train=True, download=False), "rows")
    if args.max_batches is not None:
        data = data.subset(torch.arange(min(len(data), args.max_batches * BATCH_SIZE)))
    batches = premade_batches(data, device, args.max_batches)
    print(
        f"MNIST rows, {len(batches)} batches of {BATCH_SIZE}, device {device}, "
        f"{torch.get_num_threads()} threads"
    )
    warm_up(device)
    times = _rounds(
        {
            "tutorial": lambda: tutorial_epoch(args.root, device, args.max_batches),
            "bare": lambda: bare_epoch(batches, device),
            "trainer": lambda: trainer_epoch(data, device),
            "trainer-torch-adam": lambda: trainer_epoch(data, device, torch_adam=True),
        },
        args.repeats,
    )
    _report(times)
    return 0


if __name__ == "__main__":
    sys.exit(main())
