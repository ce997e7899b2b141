"""Render ``docs/_static/mnist_rows.png``: one real MNIST digit read as 28 rows.

Left, the first training digit with its rows numbered; right, the sequence
``image_sequences(mnist, "rows")`` hands the RNN for it, time step ``t`` across and the 28 pixels
of ``x_t`` (H_in = 28) down. Reads MNIST from ``./data`` (which
``python examples/mnist_rnn.py --download`` fills) or the folder given as the first argument.
Run: ``python docs/_scripts/make_mnist_rows_figure.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from torchvision.datasets import MNIST

from rnnkit.data import image_sequences

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = Path("data")
OUT = REPO / "docs" / "_static" / "mnist_rows.png"
ROWS_MARKED = (0, 6, 13, 20, 27)


def main(root: Path = DEFAULT_ROOT) -> None:
    """Draw the figure from the first MNIST training digit and save it as a small PNG."""
    data = image_sequences(MNIST(str(root), train=True, download=False), "rows")
    x, y, _ = data.batch([0])
    sequence = x[0].numpy()  # (L, H_in) = (28, 28): row t is time step t
    label = "?" if y is None else int(y[0])
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.2, 3.2), width_ratios=(1, 1.25))
    left.imshow(sequence, cmap="gray_r", vmin=0, vmax=1)
    for t in range(1, 28):
        left.axhline(t - 0.5, color="tab:blue", linewidth=0.3, alpha=0.6)
    left.set_yticks(ROWS_MARKED, [f"$x_{{{t + 1}}}$" for t in ROWS_MARKED])
    left.set_xticks([0, 27], ["1", "28"])
    left.set_title(f"one MNIST digit ({label}), 28 × 28", fontsize=9)
    image = right.imshow(sequence.T, cmap="gray_r", vmin=0, vmax=1, aspect="auto")
    right.set_xticks(ROWS_MARKED, [str(t + 1) for t in ROWS_MARKED])
    right.set_yticks([0, 27], ["1", "28"])
    right.set_xlabel("time step t (row t of the image)", fontsize=8)
    right.set_ylabel("feature (pixel in the row)", fontsize=8)
    right.set_title("read as rows: x of shape (L, H_in) = (28, 28)", fontsize=9)
    fig.colorbar(image, ax=right, fraction=0.05, label="pixel / 255")
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=90)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_ROOT)
