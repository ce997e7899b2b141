"""What the MNIST benchmarks share: where MNIST is, ``--root`` and ``--threads``, the check."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

DEFAULT_ROOT = Path("data")
"""``./data``, the folder ``python examples/mnist_rnn.py --download`` fills with ``MNIST/raw``."""


def mnist_parser(description: str) -> argparse.ArgumentParser:
    """A parser with ``--root`` (the folder holding ``MNIST/``) and ``--threads``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="folder holding MNIST/")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    return parser


def ready(args: argparse.Namespace) -> bool:
    """Set torch's threads from ``--threads``; False (with a message) if MNIST is missing."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not (args.root / "MNIST" / "raw").is_dir():
        print(f"MNIST not found under {args.root}/MNIST/raw; pass --root.", file=sys.stderr)
        return False
    return True
