"""rnnkit's CPU kernels for GRU and LSTM layers against torch's layers, step by training step.

For each cell and shape, two copies of one :class:`rnnkit.RecurrentEncoder` (plus a linear
head on the top layer's final state and torch's default Adam, called through ``run`` as
rnnkit's models call it), one with ``kernel="torch"`` and one with ``kernel="rnnkit"``, take
turns on the same random batches (A then B, then B then A, ...), so both meet the machine's
slow spells alike. The script prints both median step times (forward, backward and Adam), the
median of the per-step ratios rnnkit / torch (below 1: rnnkit's kernel is faster), and the
floor: the step's matrix-product FLOPs divided by this machine's GEMM rate, measured in the
same run on the recurrent product's shape. It also says whether the kernels run their steps
compiled (the first run on a machine builds them); ``--torch-steps`` adds a third contender,
rnnkit's kernel with its steps as torch operations (as where the compiled step cannot be
built). No data set is needed.

Shapes (N, L, H_in -> H, options): ``mnist`` 128, 28, 28 -> 128 (the tutorial's MNIST rows);
``mnist-bi`` the same, bidirectional; ``mnist-2layer`` the same, two layers; ``long`` 32, 512,
8 -> 64; ``wide`` 128, 28, 28 -> 512. ``--cells rnn`` times the plain (tanh) RNN the same way,
for its distance from the floor (``benchmarks/rnn_kernel.py`` covers it in detail).

``--rounds R`` repeats each cell and shape R times (the step times on this shared machine move
between runs more than within one): the ratios are then the medians of the rounds' ratios, and
each row ends with the range of rnnkit / torch over the rounds.

Usage: ``python benchmarks/gru_lstm_kernel.py [--steps N] [--rounds R] [--threads N]
[--only NAME ...] [--cells rnn gru lstm] [--torch-steps] [--smoke]``
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from time import perf_counter

import torch
from torch import Tensor, nn

from rnnkit import RecurrentEncoder
from rnnkit.kernels import _fused

GATES = {"rnn": 1, "gru": 3, "lstm": 4}


@dataclass(frozen=True)
class Shape:
    """One benchmarked layer stack and batch."""

    batch: int
    steps: int
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False


SHAPES = {
    "mnist": Shape(128, 28, 28, 128),
    "mnist-bi": Shape(128, 28, 28, 128, bidirectional=True),
    "mnist-2layer": Shape(128, 28, 28, 128, num_layers=2),
    "long": Shape(32, 512, 8, 64),
    "wide": Shape(128, 28, 28, 512),
}


class Net(nn.Module):
    """An encoder and a one-unit head on the top layer's final state, as a classifier's."""

    def __init__(self, cell: str, shape: Shape, kernel: str) -> None:
        super().__init__()
        self.encoder = RecurrentEncoder(
            shape.input_size,
            shape.hidden_size,
            cell=cell,  # type: ignore[arg-type]
            num_layers=shape.num_layers,
            bidirectional=shape.bidirectional,
            kernel=kernel,  # type: ignore[arg-type]
        )
        self.head = nn.Linear(shape.hidden_size, 1)

    def forward(self, x: Tensor) -> Tensor:
        """The head's mean square on the last layer's final state."""
        _, state = self.encoder.run(x)
        h = state[0] if isinstance(state, tuple) else state
        loss: Tensor = self.head(h[-1]).pow(2).mean()
        return loss


@contextmanager
def torch_operation_steps() -> Iterator[None]:
    """Run the kernels' steps as torch operations (as where the compiled step cannot build)."""
    saved = _fused.LOADER
    _fused.LOADER = _TORCH_STEPS
    try:
        yield
    finally:
        _fused.LOADER = saved


def _refuse() -> str:
    raise _fused.TurnedOffError("benchmarked without the compiled step")


_TORCH_STEPS = _fused.Loader(_refuse)
_TORCH_STEPS.tried = True  # refuses without logging


def step_times(cell: str, shape: Shape, steps: int, names: tuple[str, ...]) -> list[list[float]]:
    """Interleaved training-step times of each named contender, in seconds.

    ``"torch"`` is torch's layer, ``"rnnkit"`` rnnkit's kernel and ``"torch-steps"`` rnnkit's
    kernel with its steps as torch operations. Each round runs them in turn, rotated and
    reversed round by round, so each meets the machine's slow spells alike.
    """
    torch.manual_seed(0)
    reference = Net(cell, shape, "torch")
    nets = {name: copy.deepcopy(reference) for name in names}
    for name, net in nets.items():
        net.encoder.kernel = "torch" if name == "torch" else "rnnkit"
    optimizers = {name: torch.optim.Adam(net.parameters(), lr=1e-3) for name, net in nets.items()}
    times: dict[str, list[float]] = {name: [] for name in names}
    generator = torch.Generator().manual_seed(0)
    for index in range(steps):
        x = torch.randn(shape.batch, shape.steps, shape.input_size, generator=generator)
        turn = names[index % len(names) :] + names[: index % len(names)]
        for name in turn if index % 2 == 0 else turn[::-1]:
            context = torch_operation_steps() if name == "torch-steps" else nullcontext()
            with context:
                start = perf_counter()
                optimizers[name].zero_grad()
                nets[name](x).backward()
                optimizers[name].step()
                times[name].append(perf_counter() - start)
    warm = max(1, steps // 10)
    return [times[name][warm:] for name in names]


def step_flops(cell: str, shape: Shape) -> float:
    """Matrix-product FLOPs of one training step's recurrent layers.

    Per layer and direction, with G gates: the forward products ``X W_ihᵀ`` and ``H W_hhᵀ``,
    and in the backward pass three products of each size (the gradients at the inputs, at
    ``W_ih`` and, through ``W_hh``, at the states and at ``W_hh``).
    """
    directions = 2 if shape.bidirectional else 1
    rows = shape.batch * shape.steps
    width = GATES[cell] * shape.hidden_size
    total = 0.0
    for layer in range(shape.num_layers):
        inputs = shape.input_size if layer == 0 else directions * shape.hidden_size
        total += directions * 3 * 2 * rows * width * (inputs + shape.hidden_size)
    return total


def gemm_rate(cell: str, shape: Shape, seconds: float = 0.3) -> float:
    """FLOP/s of this machine's ``torch.mm`` on the recurrent product's shape, (N, H) (H, GH)."""
    a = torch.randn(shape.batch, shape.hidden_size)
    b = torch.randn(shape.hidden_size, GATES[cell] * shape.hidden_size)
    out = torch.empty(shape.batch, b.shape[1])
    for _ in range(10):
        torch.mm(a, b, out=out)
    count, start = 0, perf_counter()
    while perf_counter() - start < seconds:
        for _ in range(20):
            torch.mm(a, b, out=out)
        count += 20
    return 2.0 * a.shape[0] * a.shape[1] * b.shape[1] * count / (perf_counter() - start)


def paired_ratio(baseline: list[float], other: list[float]) -> float:
    """The median of the per-step ratios ``other / baseline``."""
    return statistics.median(b / a for a, b in zip(baseline, other, strict=True))


def report(
    cell: str,
    name: str,
    shape: Shape,
    steps: int,
    gemm_seconds: float,
    torch_steps: bool,
    rounds: int = 1,
) -> None:
    """Print one row: the medians, the median ratios to torch's step and the floor.

    With several ``rounds`` (each a fresh interleaved run of ``steps`` steps), the ratios are
    the medians of the rounds' ratios, the step times and the floor the medians over all
    rounds, and the row ends with the range of the rnnkit / torch ratio over the rounds.
    """
    names = ("torch", "rnnkit", "torch-steps") if torch_steps else ("torch", "rnnkit")
    runs = [step_times(cell, shape, steps, names) for _ in range(rounds)]
    medians = [
        statistics.median(t for run in runs for t in run[i]) * 1e3 for i in range(len(names))
    ]
    per_round = [[paired_ratio(run[0], run[i]) for run in runs] for i in range(1, len(names))]
    ratios = [statistics.median(values) for values in per_round]
    rates = [gemm_rate(cell, shape, gemm_seconds) for _ in range(rounds)]
    floor = step_flops(cell, shape) / statistics.median(rates) * 1e3
    row = f"{cell:<5} {name:<13} {medians[0]:9.3f} {medians[1]:10.3f} {ratios[0]:15.3f} "
    row += f"{floor:9.3f} {floor / medians[0]:13.3f}"
    if torch_steps:
        row += f" {medians[2]:15.3f} {ratios[1]:20.3f}"
    if rounds > 1:
        row += f" {min(per_round[0]):7.3f}-{max(per_round[0]):.3f}"
    print(row)


def compiled_step() -> str:
    """Whether rnnkit's kernels run their steps compiled on this machine, or why not."""
    started = perf_counter()
    built = _fused.steps(torch.float32) is not None
    seconds = perf_counter() - started
    if built:
        return f"compiled step: yes (built or loaded in {seconds:.1f} s)"
    return f"compiled step: no ({_fused.unavailable_reason()})"


def main(argv: list[str] | None = None) -> int:
    """Print, per cell and shape, the median step times, their ratios and the GEMM floor."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps per kernel")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--only", nargs="*", choices=sorted(SHAPES), help="shapes to run")
    parser.add_argument("--cells", nargs="*", choices=sorted(GATES), default=["gru", "lstm"])
    parser.add_argument(
        "--torch-steps",
        action="store_true",
        help="also time rnnkit's kernel with its steps as torch operations (no compiled step)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="interleaved runs per cell and shape (median, range)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check it runs")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, but got {args.rounds}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    shapes = {name: SHAPES[name] for name in args.only or SHAPES}
    if args.smoke:
        shapes = {
            n: replace(s, batch=4, steps=min(s.steps, 6), hidden_size=8) for n, s in shapes.items()
        }
    print(
        f"machine {platform.machine()} {platform.processor() or platform.system()}, "
        f"{os.cpu_count()} CPUs; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.steps} steps, {args.rounds} round(s)"
    )
    print(compiled_step())
    header = [
        f"{'cell':<5} {'shape':<13} {'torch ms':>9} {'rnnkit ms':>10} {'rnnkit / torch':>15} "
        f"{'floor ms':>9} {'floor / torch':>13}"
    ]
    if args.torch_steps:
        header.append(f"{'torch-steps ms':>15} {'torch-steps / torch':>20}")
    if args.rounds > 1:
        header.append("rnnkit / torch range")
    print(" ".join(header))
    gemm_seconds = 0.01 if args.smoke else 0.3
    for cell in args.cells:
        for name, shape in shapes.items():
            report(cell, name, shape, args.steps, gemm_seconds, args.torch_steps, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
