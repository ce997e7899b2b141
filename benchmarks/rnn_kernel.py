"""rnnkit's CPU kernel for plain RNNs against torch's layer, training step by training step.

Two copies of one :class:`rnnkit.RecurrentEncoder` (plus a linear head and torch's default
Adam; called through ``run`` as rnnkit's models call it, or with ``--through forward`` as a
user calls the encoder itself), one with ``kernel="torch"`` (A) and one with ``kernel="auto"``
(B, rnnkit's kernel), take turns on the same random batches (A on batch i, then B, then B on
batch i + 1, then A, ...), so both meet the machine's slow spells alike. For each shape the
script prints both median step times (forward, backward and optimizer step) and the median of
the per-step ratios B / A: below 1 means rnnkit's kernel is faster. No data set is needed.

Shapes (N, L, H_in -> H, options):

- ``mnist``: the tutorial's MNIST RNN, 128, 28, 28 -> 128, relu, with a one-unit head and a
  squared loss on the final state (the tutorial's 10-class head and cross-entropy cost the
  same either way);
- ``mnist-outputs``: the same with a loss on every step's output;
- ``stacked-bi``: 128, 28, 28 -> 128, tanh, 2 layers, bidirectional;
- ``long``: 64, 200, 8 -> 64, tanh;
- ``sine``: the tutorial's sine regressor on 50 steps (the tutorial's sequence has 100):
  1, 50, 1 -> 16, tanh, loss on every step;
- ``one-step``: 32, 1, 1 -> 16, tanh, an ``h0`` given (a closed-loop training step's call):
  shorter than ``MIN_STEPS``, so both copies run torch's layer, and the ratio shows the
  method's own error.

Usage: ``python benchmarks/rnn_kernel.py [--steps N] [--threads N] [--only NAME ...]
[--through run|forward]``
"""

from __future__ import annotations

import argparse
import copy
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter

import torch
from torch import Tensor, nn

from rnnkit import RecurrentEncoder


@dataclass(frozen=True)
class Shape:
    """One benchmarked layer and batch."""

    batch: int
    steps: int
    input_size: int
    hidden_size: int
    nonlinearity: str = "tanh"
    num_layers: int = 1
    bidirectional: bool = False
    per_step_loss: bool = False
    with_h0: bool = False


SHAPES = {
    "mnist": Shape(128, 28, 28, 128, "relu"),
    "mnist-outputs": Shape(128, 28, 28, 128, "relu", per_step_loss=True),
    "stacked-bi": Shape(128, 28, 28, 128, num_layers=2, bidirectional=True),
    "long": Shape(64, 200, 8, 64),
    "sine": Shape(1, 50, 1, 16, per_step_loss=True),
    "one-step": Shape(32, 1, 1, 16, with_h0=True),
}


class Net(nn.Module):
    """An encoder and a linear head on the final state or on every step's output."""

    def __init__(self, shape: Shape, through_forward: bool = False) -> None:
        super().__init__()
        self.shape = shape
        self.through_forward = through_forward
        self.encoder = RecurrentEncoder(
            shape.input_size,
            shape.hidden_size,
            nonlinearity=shape.nonlinearity,  # type: ignore[arg-type]
            num_layers=shape.num_layers,
            bidirectional=shape.bidirectional,
        )
        directions = 2 if shape.bidirectional and shape.per_step_loss else 1
        width = directions * shape.hidden_size
        self.head = nn.Linear(width, 1)

    def forward(self, x: Tensor, h0: Tensor | None) -> Tensor:
        """The loss: the head's mean square on the last layer's final state or outputs.

        The encoder runs through :meth:`~rnnkit.RecurrentEncoder.run`, as rnnkit's models call
        it (``--through forward`` calls the encoder itself, which validates and, for a
        kernel's unidirectional output, returns a copy).
        """
        if self.through_forward:
            output, state = self.encoder(x, h0)
        else:
            output, state = self.encoder.run(x, h0)
        features = output if self.shape.per_step_loss else state[-1]
        loss: Tensor = self.head(features).pow(2).mean()
        return loss


Step = Callable[[Tensor, Tensor | None], None]


def make_step(net: Net) -> Step:
    """One training step (forward, backward, Adam) of ``net``."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step(x: Tensor, h0: Tensor | None) -> None:
        optimizer.zero_grad()
        net(x, h0).backward()
        optimizer.step()

    return step


def batches(shape: Shape, count: int) -> list[tuple[Tensor, Tensor | None]]:
    """``count`` random batches (and initial states, if the shape has them)."""
    generator = torch.Generator().manual_seed(0)
    states = (2 if shape.bidirectional else 1) * shape.num_layers
    out: list[tuple[Tensor, Tensor | None]] = []
    for _ in range(count):
        x = torch.randn(shape.batch, shape.steps, shape.input_size, generator=generator)
        h0 = None
        if shape.with_h0:
            h0 = torch.randn(states, shape.batch, shape.hidden_size, generator=generator)
        out.append((x, h0))
    return out


def compare(shape: Shape, steps: int, through_forward: bool = False) -> tuple[float, float, float]:
    """Median step times of torch's layer and rnnkit's kernel, and the median ratio."""
    torch.manual_seed(0)
    reference = Net(shape, through_forward)
    reference.encoder.kernel = "torch"
    candidate = copy.deepcopy(reference)
    candidate.encoder.kernel = "auto"
    runs = {"torch": make_step(reference), "rnnkit": make_step(candidate)}
    times: dict[str, list[float]] = {"torch": [], "rnnkit": []}
    for index, (x, h0) in enumerate(batches(shape, steps)):
        order = ("torch", "rnnkit") if index % 2 == 0 else ("rnnkit", "torch")
        for name in order:
            start = perf_counter()
            runs[name](x, h0)
            times[name].append(perf_counter() - start)
    warm = steps // 10
    ratios = [b / a for a, b in zip(times["torch"][warm:], times["rnnkit"][warm:], strict=True)]
    return (
        statistics.median(times["torch"][warm:]),
        statistics.median(times["rnnkit"][warm:]),
        statistics.median(ratios),
    )


def main(argv: list[str] | None = None) -> int:
    """Print, per shape, both median step times and the median ratio rnnkit / torch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps per kernel")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--only", nargs="*", choices=sorted(SHAPES), help="shapes to run")
    parser.add_argument(
        "--through", choices=("run", "forward"), default="run", help="encoder method called"
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads, through = torch.get_num_threads(), args.through
    print(f"torch {torch.__version__}, {threads} threads, {args.steps} steps, through {through}")
    print(f"{'shape':<14} {'torch ms':>9} {'rnnkit ms':>10} {'rnnkit / torch':>15}")
    for name in args.only or SHAPES:
        slow, fast, ratio = compare(SHAPES[name], args.steps, args.through == "forward")
        print(f"{name:<14} {slow * 1e3:9.3f} {fast * 1e3:10.3f} {ratio:15.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
