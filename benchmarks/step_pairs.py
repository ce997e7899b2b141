"""Two ways of taking a training step, timed step by step in alternation.

On a shared machine a whole epoch can take 30% longer from one run to the next, which hides a
difference of a few percent between two epoch-long runs. Here two step functions take turns on
the same batches (A on batch i, then B on batch i, then A on batch i + 1, ...), so that both
meet the same slow spells, and the median of the per-step ratios B/A is printed. Pairs:

- ``same``: the bare step against itself: the method's own error (ideally 1.000);
- ``fused-adam``: the bare step with torch's default Adam (A) and with ``fused=True`` (B), the
  Trainer's ``optimizer="adam"``: what the fused update saves per step;
- ``gather``: the bare step on batches made beforehand (A) and on batches gathered and
  converted from the dataset's uint8 storage at each step (B), as the Trainer did before it
  gathered 16 batches at a time.

The model is the tutorial's (RNN, relu, hidden 128, Adam 1e-3, batch 128) on real MNIST
(``./data``, which ``python examples/mnist_rnn.py --download`` fills, or ``--root``).

Usage: ``python benchmarks/step_pairs.py [--root DIR] [--max-batches N] [--threads N]``
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from time import perf_counter

import torch
from torch import Tensor
from torchvision.datasets import MNIST

from rnnkit.data import SequenceDataset, image_sequences

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _mnist_args import mnist_parser, ready
from trainer_vs_loop import BATCH_SIZE, LR, TutorialRNN, bare_step

Step = Callable[[int], None]


def make_step(
    batches: list[tuple[Tensor, Tensor]],
    data: SequenceDataset | None = None,
    order: Tensor | None = None,
    fused: bool = False,
) -> Step:
    """A training step on batch ``i`` of a fresh tutorial model (made beforehand or gathered)."""
    torch.manual_seed(1)
    model = TutorialRNN(torch.device("cpu"))
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, fused=fused)

    def step(i: int) -> None:
        if data is None or order is None:
            x, y = batches[i]
        else:
            x, y_or_none, _ = data.batch(order[i * BATCH_SIZE : (i + 1) * BATCH_SIZE])
            assert y_or_none is not None
            y = y_or_none
        bare_step(model, optimizer, x, y)

    return step


def paired_ratio(first: Step, second: Step, steps: int) -> tuple[float, float]:
    """Median of the per-step time ratios second/first, and first's median step in ms."""
    ratios, times = [], []
    for i in range(steps):
        start = perf_counter()
        first(i)
        middle = perf_counter()
        second(i)
        end = perf_counter()
        ratios.append((end - middle) / (middle - start))
        times.append(middle - start)
    return statistics.median(ratios), 1e3 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = mnist_parser(__doc__.splitlines()[0])
    parser.add_argument("--max-batches", type=int, default=None, help="steps per pair (smoke)")
    args = parser.parse_args(argv)
    if not ready(args):
        return 1
    data = image_sequences(MNIST(str(args.root), train=True, download=False), "rows")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    starts = range(0, len(data), BATCH_SIZE)
    batches = [data.batch(order[s : s + BATCH_SIZE])[:2] for s in starts]
    premade = [(x, y) for x, y in batches if y is not None]
    steps = len(premade) if args.max_batches is None else min(args.max_batches, len(premade))
    print(f"MNIST rows, {steps} steps per pair, {torch.get_num_threads()} threads")
    pairs: dict[str, tuple[Step, Step]] = {
        "same": (make_step(premade), make_step(premade)),
        "fused-adam": (make_step(premade), make_step(premade, fused=True)),
        "gather": (make_step(premade), make_step(premade, data, order)),
    }
    for name, (first, second) in pairs.items():
        ratio, ms = paired_ratio(first, second, steps)
        print(f"{name:>10}: B/A = {ratio:.3f} (median of per-step ratios; A: {ms:.2f} ms a step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
