"""Count the MNIST training digits whose last row (row 28) is blank (all 28 pixels zero).

A bidirectional RNN's ``output[:, -1, :]`` backward half has read that row only; the docs
quote this count. Usage: ``python scripts/mnist_blank_rows.py --data-dir DIR [--download]``.
"""

from __future__ import annotations

import argparse

import torchvision


def main() -> None:
    """Print the number and the share of training digits with a blank last row."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--download", action="store_true")
    args = parser.parse_args()
    digits = torchvision.datasets.MNIST(args.data_dir, train=True, download=args.download).data
    blank = int((digits[:, -1, :] == 0).all(dim=1).sum())
    share = 100 * blank / len(digits)
    print(f"training digits: {len(digits)}, last row blank: {blank} ({share:.1f}%)")


if __name__ == "__main__":
    main()
