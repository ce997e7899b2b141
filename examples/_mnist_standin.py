"""A small MNIST-format stand-in for smoke runs, and where the examples find MNIST.

The MNIST examples read the real data through :class:`torchvision.datasets.MNIST`, which looks
for four IDX files in ``ROOT/MNIST/raw``. When no copy is at hand (CI without the data, a
machine without a network) :func:`write_mnist_standin` writes a few hundred synthetic digits in
exactly that format: seven-segment digits 0-9 drawn at a random offset and stroke width, with
noise. They are learnable (each class has its own strokes), so a smoke run still trains
something, but their accuracies say nothing about MNIST.

:func:`resolve_mnist_root` decides where an example reads from: the ``--data-dir`` given (with
``--download``, torchvision fetches MNIST there), or, in a smoke run without data, the stand-in.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = [
    "MNIST_FILES",
    "MnistSource",
    "has_mnist",
    "resolve_mnist_root",
    "write_mnist_standin",
]

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
"""The uncompressed IDX files torchvision's ``MNIST(root, download=False)`` reads."""

# Seven segments as (row0, row1, col0, col1) boxes in a 20x12 glyph: a top, b top right,
# c bottom right, d bottom, e bottom left, f top left, g middle.
_SEGMENTS = {
    "a": (0, 2, 0, 12),
    "b": (0, 11, 10, 12),
    "c": (9, 20, 10, 12),
    "d": (18, 20, 0, 12),
    "e": (9, 20, 0, 2),
    "f": (0, 11, 0, 2),
    "g": (9, 11, 0, 12),
}
_DIGIT_SEGMENTS = (
    "abcdef",  # 0
    "bc",  # 1
    "abged",  # 2
    "abgcd",  # 3
    "fgbc",  # 4
    "afgcd",  # 5
    "afgedc",  # 6
    "abc",  # 7
    "abcdefg",  # 8
    "abcdfg",  # 9
)


def has_mnist(root: Path) -> bool:
    """Whether ``root/MNIST/raw`` holds the four uncompressed MNIST IDX files.

    Args:
        root: The folder torchvision's ``MNIST(root=...)`` would be given.

    Returns:
        True when every file of :data:`MNIST_FILES` exists there.
    """
    raw = Path(root) / "MNIST" / "raw"
    return all((raw / name).is_file() for name in MNIST_FILES)


def _glyph(digit: int, rng: np.random.Generator) -> np.ndarray:
    """One 28x28 ``uint8`` seven-segment digit at a random offset, with noise."""
    image = np.zeros((28, 28), dtype=np.float64)
    top, left = rng.integers(2, 7), rng.integers(4, 13)
    widen = int(rng.integers(0, 2))
    for name in _DIGIT_SEGMENTS[digit]:
        r0, r1, c0, c1 = _SEGMENTS[name]
        image[top + r0 : top + r1 + widen, left + c0 : left + c1 + widen] = 1.0
    image = image * rng.uniform(0.7, 1.0) + rng.normal(0.0, 0.08, image.shape)
    return np.asarray(np.clip(image, 0.0, 1.0) * 255.0, dtype=np.uint8)


def _idx_images(images: np.ndarray) -> bytes:
    n, rows, cols = images.shape
    return struct.pack(">iiii", 0x00000803, n, rows, cols) + images.tobytes()


def _idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">ii", 0x00000801, labels.shape[0]) + labels.astype(np.uint8).tobytes()


def _write_split(raw: Path, prefix: str, count: int, rng: np.random.Generator) -> None:
    labels = np.arange(count) % 10
    rng.shuffle(labels)
    images = np.stack([_glyph(int(d), rng) for d in labels])
    _write_atomically(raw / f"{prefix}-images-idx3-ubyte", _idx_images(images))
    _write_atomically(raw / f"{prefix}-labels-idx1-ubyte", _idx_labels(labels))


def _write_atomically(path: Path, data: bytes) -> None:
    # Under torchrun every process writes the same (seeded) files; a reader must never see
    # a half-written one, so each goes to a private temporary name and is renamed into place.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_mnist_standin(
    root: str | Path, *, train_size: int = 600, test_size: int = 200, seed: int = 0
) -> Path:
    """Write a synthetic MNIST-format data set into ``root/MNIST/raw``.

    The files are the four uncompressed IDX files of :data:`MNIST_FILES` (big-endian
    headers, ``uint8`` pixels and labels), so ``torchvision.datasets.MNIST(root,
    download=False)`` reads them as it reads the real ones. Classes are balanced.

    Args:
        root: The folder to pass to torchvision as ``root``; created when missing.
        train_size: Training digits.
        test_size: Test digits.
        seed: Seed of the drawing (same seed, same bytes).

    Returns:
        ``root``, as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``train_size`` or ``test_size`` below 10 (one digit per class).
    """
    if min(train_size, test_size) < 10:
        raise ValueError(
            f"Expected train_size and test_size >= 10 (one digit per class), but got "
            f"{train_size} and {test_size}."
        )
    root = Path(root)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    _write_split(raw, "train", train_size, rng)
    _write_split(raw, "t10k", test_size, rng)
    return root


class MnistSource(NamedTuple):
    """Where MNIST is read from: the ``root`` for torchvision, and whether it is the stand-in."""

    root: Path
    standin: bool


def resolve_mnist_root(
    data_dir: str | Path, *, download: bool, smoke: bool, scratch: Path
) -> MnistSource:
    """Where an example reads MNIST from, writing the stand-in when a smoke run has no data.

    In order: ``data_dir`` when it holds MNIST (or when ``download`` is set: torchvision then
    fetches it there); otherwise, in smoke mode, a stand-in written into ``scratch``.

    Args:
        data_dir: The ``--data-dir`` given.
        download: Whether ``--download`` was given.
        smoke: Whether this is a ``--smoke`` run.
        scratch: Where to write the stand-in (e.g. the run's output folder).

    Returns:
        The ``root`` to give ``torchvision.datasets.MNIST``, and whether it is the stand-in.

    Raises:
        FileNotFoundError: No MNIST in ``data_dir`` outside smoke mode and no ``download``.
    """
    data_dir = Path(data_dir)
    if has_mnist(data_dir) or download:
        return MnistSource(data_dir, standin=False)
    if smoke:
        return MnistSource(write_mnist_standin(scratch / "mnist-standin"), standin=True)
    raise FileNotFoundError(
        f"Expected the MNIST IDX files in {data_dir / 'MNIST' / 'raw'}, but they are not there. "
        "Hint: pass --data-dir with a folder holding MNIST/raw, add --download to fetch it "
        "there, or use --smoke to run on a generated stand-in."
    )
