"""Variable-length batches on the CPU: packed vs padded + gather vs the equal-length skip.

rnnkit's encoder avoids :func:`torch.nn.utils.rnn.pack_padded_sequence` where it can (packed
recurrent layers run far slower than padded ones on the CPU; pytorch issue 149194). This
script times, in one run and on the same data, a training step (forward and backward) of a
unidirectional layer and its readout of each sequence's last valid step, three ways:

* ``packed``: pack, run, unpack, gather (what a length-aware model does without rnnkit);
* ``padded+gather``: rnnkit's path: run padded, zero the padding, gather the last valid step
  (right padding cannot change the steps before it);
* ``equal lengths``: every length equals L: packed anyway, vs rnnkit's skip (no packing).

It prints the median time of each and the ratios against the packed baseline of the same
run. Default sizes are the tutorial's MNIST model (N = 128, L = 28, H_in = 28, hidden 128)
plus a longer sequence (N = 64, L = 100); each path runs up to ``--repeats`` times within
``--budget`` seconds, so the default run stays near a minute even on a slow machine.
``--smoke`` runs tiny sizes once, to check that the script works.

Usage::

    python benchmarks/packing.py            # the figures
    python benchmarks/packing.py --smoke    # a few seconds, no meaningful figures
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnkit.models.encoder import RecurrentEncoder, gather_last
from rnnkit.shapes import CellType


@dataclass(frozen=True)
class Case:
    """One benchmark configuration."""

    cell: CellType
    batch: int
    steps: int
    input_size: int
    hidden_size: int


def packed_step(encoder: RecurrentEncoder, x: Tensor, lengths: Tensor) -> Tensor:
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    output, _ = encoder.rnn(packed)
    padded, _ = pad_packed_sequence(output, batch_first=True, total_length=x.shape[1])
    return gather_last(padded, lengths)


def rnnkit_step(encoder: RecurrentEncoder, x: Tensor, lengths: Tensor) -> Tensor:
    return gather_last(encoder.run_outputs(x, None, lengths), lengths)


def time_training_step(
    step: Callable[[RecurrentEncoder, Tensor, Tensor], Tensor],
    encoder: RecurrentEncoder,
    x: Tensor,
    lengths: Tensor,
    repeats: int,
    budget: float,
) -> float:
    """Median seconds of forward + backward, after one warm-up run.

    Runs ``repeats`` times, or fewer when the warm-up shows they would take over ``budget``
    seconds (at least once).
    """
    warm_up = _one_step(step, encoder, x, lengths)
    runs = max(1, min(repeats, int(budget / warm_up)))
    return statistics.median(_one_step(step, encoder, x, lengths) for _ in range(runs))


def _one_step(
    step: Callable[[RecurrentEncoder, Tensor, Tensor], Tensor],
    encoder: RecurrentEncoder,
    x: Tensor,
    lengths: Tensor,
) -> float:
    start = time.perf_counter()
    torch.autograd.backward(step(encoder, x, lengths).square().sum())
    seconds = time.perf_counter() - start
    encoder.zero_grad(set_to_none=True)
    return seconds


def run_case(case: Case, repeats: int, budget: float) -> list[tuple[str, float]]:
    torch.manual_seed(0)
    encoder = RecurrentEncoder(case.input_size, case.hidden_size, cell=case.cell)
    x = torch.randn(case.batch, case.steps, case.input_size)
    ragged = torch.randint(1, case.steps + 1, (case.batch,))
    ragged[0] = case.steps
    full = torch.full((case.batch,), case.steps)
    torch.testing.assert_close(packed_step(encoder, x, ragged), rnnkit_step(encoder, x, ragged))
    paths = [
        ("ragged: packed", packed_step, ragged),
        ("ragged: padded+gather", rnnkit_step, ragged),
        ("equal: packed", packed_step, full),
        ("equal: skip", rnnkit_step, full),
    ]
    return [
        (name, time_training_step(step, encoder, x, lengths, repeats, budget))
        for name, step, lengths in paths
    ]


def report(case: Case, timings: list[tuple[str, float]]) -> None:
    times = dict(timings)
    print(
        f"\n{case.cell.upper()}  N={case.batch} L={case.steps} H_in={case.input_size} "
        f"hidden={case.hidden_size}  (forward + backward, median)"
    )
    for name, seconds in timings:
        print(f"  {name:<24}{seconds * 1e3:9.2f} ms")
    ragged = times["ragged: packed"] / times["ragged: padded+gather"]
    equal = times["equal: packed"] / times["equal: skip"]
    print(f"  speed-up padded+gather vs packed: {ragged:5.2f}x")
    print(f"  speed-up skip vs packed (equal):  {equal:5.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat")
    parser.add_argument("--repeats", type=int, default=10, help="most timed runs per path")
    parser.add_argument(
        "--budget", type=float, default=2.0, help="seconds per path; caps the repeats"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        cases = [Case(cell, 4, 6, 3, 8) for cell in ("rnn", "lstm")]
        repeats = 1
    else:
        cases = [
            Case(cell, batch, steps, 28, 128)
            for cell in ("rnn", "lstm")
            for batch, steps in ((128, 28), (64, 100))
        ]
        repeats = args.repeats
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    start = time.perf_counter()
    for case in cases:
        report(case, run_case(case, repeats, args.budget))
    print(f"\ntotal {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
