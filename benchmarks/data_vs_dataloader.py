"""One epoch of shuffled MNIST batches: rnnkit's adapter against the tutorial's DataLoader.

Both sides produce the same batches, ``(128, 28, 28)`` ``float32`` pixels in [0, 1] and their
labels, from the real MNIST training set (``./data``, which
``python examples/mnist_rnn.py --download`` fills, or ``--root``), in one run:

- baseline: ``DataLoader(MNIST(transform=ToTensor()), batch_size=128, shuffle=True)``, the
  tutorial's loader (one PIL image and one ``ToTensor`` call per sample, then a collate);
- adapter: ``image_sequences(MNIST(...))``, then ``SequenceDataset.batch`` over the slices of
  one ``torch.randperm`` per epoch (the Trainer's fast path).

It prints both epoch times, their ratio (target: the adapter at least 20 times faster) and the
memory held by the adapter's training set (target: under 60 MB; ``uint8`` pixels, 47 MB).

Usage: ``python benchmarks/data_vs_dataloader.py [--root DIR] [--batch-size 128] [--threads N]``
"""

from __future__ import annotations

import sys
from time import perf_counter

import torch
from _mnist_args import mnist_parser, ready
from torch.utils.data import DataLoader
from torchvision.datasets import MNIST
from torchvision.transforms import ToTensor

from rnnkit.data import SequenceDataset, image_sequences

SPEEDUP_TARGET = 20.0
MEMORY_TARGET_MB = 60.0


def adapter_epoch(data: SequenceDataset, batch_size: int) -> tuple[float, int]:
    """Seconds for one shuffled epoch of ``data.batch`` calls, and the samples seen."""
    start = perf_counter()
    order = torch.randperm(len(data))
    seen = 0
    for first in range(0, len(data), batch_size):
        x, _labels, _lengths = data.batch(order[first : first + batch_size])
        seen += len(x)
    return perf_counter() - start, seen


def loader_epoch(dataset: MNIST, batch_size: int) -> tuple[float, int]:
    """Seconds for one shuffled epoch of the tutorial's DataLoader, and the samples seen."""
    start = perf_counter()
    seen = 0
    for images, _labels in DataLoader(dataset, batch_size=batch_size, shuffle=True):
        x = images.squeeze(1)  # the tutorial's (N, 1, 28, 28) -> (N, 28, 28)
        seen += len(x)
    return perf_counter() - start, seen


def main(argv: list[str] | None = None) -> int:
    parser = mnist_parser(__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args(argv)
    if not ready(args):
        return 1
    torch.manual_seed(0)
    start = perf_counter()
    data = image_sequences(MNIST(str(args.root), train=True, download=False), "rows")
    build = perf_counter() - start
    baseline = MNIST(str(args.root), train=True, download=False, transform=ToTensor())
    fast, fast_seen = adapter_epoch(data, args.batch_size)
    slow, slow_seen = loader_epoch(baseline, args.batch_size)
    assert fast_seen == slow_seen == len(data)
    report(data, build, fast, slow, args.batch_size)
    return 0


def report(data: SequenceDataset, build: float, fast: float, slow: float, batch: int) -> None:
    """Print the figures, the ratios and whether the targets were met."""
    speedup, megabytes = slow / fast, data.nbytes / 1e6
    print(
        f"MNIST training set: {len(data)} samples, batch {batch}, torch threads "
        f"{torch.get_num_threads()}"
    )
    print(f"DataLoader(MNIST(transform=ToTensor()), shuffle=True): {slow:8.3f} s / epoch")
    print(f"SequenceDataset.batch over torch.randperm:             {fast:8.3f} s / epoch")
    print(f"  (building it with image_sequences, once:             {build:8.3f} s)")
    print(
        f"speed-up, epoch:           {speedup:7.1f}x  (target >= {SPEEDUP_TARGET:.0f}x: "
        f"{'met' if speedup >= SPEEDUP_TARGET else 'MISSED'})"
    )
    print(f"speed-up, epoch + build:   {slow / (fast + build):7.1f}x")
    print(
        f"memory held by the adapter's training set: {megabytes:.1f} MB "
        f"({str(data.x.dtype).removeprefix('torch.')} pixels; target < {MEMORY_TARGET_MB:.0f} "
        f"MB: {'met' if megabytes < MEMORY_TARGET_MB else 'MISSED'})"
    )


if __name__ == "__main__":
    sys.exit(main())
