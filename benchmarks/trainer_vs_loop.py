"""One MNIST epoch four ways: the tutorial's loop, a bare loop, and ``Trainer.fit`` twice.

The tutorial's model (an RNN with relu, hidden size 128, read row by row: L = 28, H_in = 28;
``--cell gru`` or ``lstm`` puts that layer in its place, in every run),
Adam with lr 1e-3 and batch size 128 on the real MNIST training set (``./data``, which
``python examples/mnist_rnn.py --download`` fills, or ``--root``), timed in one run:

- tutorial: its own code: ``DataLoader(MNIST(transform=ToTensor()), batch_size=128,
  shuffle=True)``, ``images.squeeze(1)``, a hand-built ``h0`` moved to the device every call,
  ``out[:, -1, :]``, and ``loss.item()`` every 100 steps (its progress print, not printed);
  its ``MNIST`` object is read before the clock starts, as every run's data is;
- bare: the tutorial's network in plain torch (no rnnkit code at all) trained by a minimal
  loop over batches made beforehand (float tensors already on the device, shuffled once): the
  cost of the arithmetic alone, so trainer-torch/bare (below) is everything the Trainer adds
  (the shape checks on every call included);
- trainer: ``Trainer(max_epochs=1, batch_size=128).fit(model, image_sequences(MNIST(...)))``
  with the progress bar on (it draws when stderr is a terminal), timed from the call to its
  return (checks, set-up, per-batch gathering and conversion, metrics and callbacks included).
  As shipped: its ``optimizer="adam"`` is torch's Adam with ``fused=True``, and its RNN trains
  through rnnkit's CPU kernel (``kernel="auto"``; see ``benchmarks/rnn_kernel.py``);
- trainer-torch: the same fit doing exactly the bare loop's arithmetic: torch's own RNN layer
  (``model.encoder.kernel = "torch"``) and ``optimizer=lambda p: torch.optim.Adam(p, lr=1e-3)``,
  the default Adam the tutorial and the bare loop use. trainer-torch/bare is the Trainer's own
  cost, without what its kernel and fused Adam save.

Two ways to time them (``--method``):

- ``interleaved`` (the default on the CPU): each round fits twice. The fit as shipped runs the
  tutorial's loop and the bare loop *inside* it: after every 25 of its batches, a
  :class:`Interleaver` callback runs 25 steps of each loop and times them apart, and the
  Trainer's time is the fit's less theirs. The second fit (trainer-torch) runs a second bare
  loop the same way. The loops thus share the machine's slow spells (seconds long) run by
  run, and each round gives paired ratios. The order of the two fits alternates; the script
  prints every round's times, then each ratio's median and range over the rounds
  (``--repeats``, default 7), and judges the targets on the medians. It also prints
  bare / tutorial, the floor of trainer / tutorial (the arithmetic alone).
- ``sequential`` (the default on CUDA, where a timed run inside the fit would need a
  synchronisation): the four run one after another, whole epochs, ``--repeats`` rounds
  (default 7), the order reversed every other round. It prints every time, then each run's
  best (fastest) and median time and the ratios of both, and judges the targets on the best
  times, as :mod:`timeit` advises. On a shared machine whose epochs vary by 2x within a run,
  these ratios move by 10% from run to run.

``--max-batches N`` runs N batches of each, for a smoke test.

Usage: ``python benchmarks/trainer_vs_loop.py [--root DIR] [--max-batches N] [--threads N]
[--repeats N] [--device auto|cpu|cuda] [--method interleaved|sequential] [--cell rnn|gru|lstm]``
"""

from __future__ import annotations

import gc
import statistics
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from time import perf_counter
from typing import Any

import torch
import torch.nn.functional as F
from _interleave import Interleaver
from _mnist_args import mnist_parser, ready
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchvision.datasets import MNIST
from torchvision.transforms import ToTensor

from rnnkit.data import SequenceDataset, image_sequences
from rnnkit.models import SequenceClassifier
from rnnkit.training.trainer import Trainer

BATCH_SIZE = 128
LR = 1e-3
TUTORIAL_TARGETS = {"rnn": 0.5, "gru": 0.5, "lstm": 0.6}
BARE_TARGET = 1.05
CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class TutorialRNN(nn.Module):
    """The tutorial's model, as it wrote it (``h0`` built and moved on every call)."""

    def __init__(self, device: torch.device, cell: str = "rnn") -> None:
        super().__init__()
        self.device = device
        options = {"nonlinearity": "relu"} if cell == "rnn" else {}
        self.rnn = CELLS[cell](28, 128, num_layers=1, batch_first=True, **options)
        self.linear = nn.Linear(128, 10)

    def forward(self, x: Tensor) -> Tensor:
        """Logits from the last step's output, as the tutorial computes them."""
        h0 = torch.zeros(1, x.size(0), 128).to(self.device)
        state = (h0, torch.zeros_like(h0)) if isinstance(self.rnn, nn.LSTM) else h0
        out, _ = self.rnn(x, state)
        return self.linear(out[:, -1, :])  # type: ignore[no-any-return]


def _rnnkit_model(
    device: torch.device, torch_layer: bool = False, cell: str = "rnn"
) -> SequenceClassifier:
    torch.manual_seed(1)
    options: dict[str, Any] = {"nonlinearity": "relu"} if cell == "rnn" else {"cell": cell}
    model = SequenceClassifier(28, 10, 128, readout="output_last", **options)
    if torch_layer:
        model.encoder.kernel = "torch"
    return model.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tutorial_dataset(root: Path) -> MNIST:
    """The tutorial's training set: ``MNIST(transform=ToTensor())``, read before any timing.

    Every run gets its data ready before its clock starts (the Trainer's ``image_sequences``
    and the bare loop's batches too), so that the epochs compare training alone.
    """
    return MNIST(str(root), train=True, transform=ToTensor(), download=False)


def tutorial_steps(
    dataset: MNIST, device: torch.device, max_batches: int | None, cell: str = "rnn"
) -> Iterator[None]:
    """The tutorial's training loop, one step per ``next()``; the first builds its loader.

    The model and its Adam are built at the call, before any clock starts, as the Trainer's
    model is.
    """
    return _tutorial_loop(*tutorial_model(device, cell), dataset, max_batches)


def _tutorial_loop(
    model: nn.Module, optimizer: torch.optim.Optimizer, dataset: MNIST, max_batches: int | None
) -> Iterator[None]:
    device = next(model.parameters()).device
    loss_f = nn.CrossEntropyLoss()
    loader = DataLoader(dataset=dataset, batch_size=BATCH_SIZE, shuffle=True)
    model.train()
    for step, (images, labels) in enumerate(loader):
        if max_batches is not None and step >= max_batches:
            return
        images, labels = images.squeeze(1).to(device), labels.to(device)
        loss = loss_f(model(images), labels)
        optimizer.zero_grad()
        torch.autograd.backward(loss)
        optimizer.step()
        if step % 100 == 0:
            loss.item()  # the tutorial prints it here
        yield


def tutorial_epoch(
    root: Path, device: torch.device, max_batches: int | None, cell: str = "rnn"
) -> float:
    """The tutorial's training loop for one epoch (or ``max_batches``); seconds."""
    dataset = tutorial_dataset(root)
    return _consumed(tutorial_steps(dataset, device, max_batches, cell), device)


def _consumed(steps: Iterator[None], device: torch.device) -> float:
    """Seconds to run every step of ``steps`` (the generator's set-up included)."""
    start = perf_counter()
    for _ in steps:
        pass
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


def tutorial_model(
    device: torch.device, cell: str = "rnn"
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The tutorial's network (seeded: the same initial weights every time) and its Adam."""
    torch.manual_seed(1)
    model = TutorialRNN(device, cell).to(device)
    model.train()
    return model, torch.optim.Adam(model.parameters(), lr=LR)


def bare_steps(
    batches: list[tuple[Tensor, Tensor]], device: torch.device, cell: str = "rnn"
) -> Iterator[None]:
    """A minimal loop over premade batches, one step per ``next()``.

    The model and its Adam are built at the call, before any clock starts.
    """
    model, optimizer = tutorial_model(device, cell)
    return _bare_loop(model, optimizer, batches)


def _bare_loop(
    model: nn.Module, optimizer: torch.optim.Optimizer, batches: list[tuple[Tensor, Tensor]]
) -> Iterator[None]:
    for x, y in batches:
        bare_step(model, optimizer, x, y)
        yield


def bare_epoch(
    batches: list[tuple[Tensor, Tensor]], device: torch.device, cell: str = "rnn"
) -> float:
    """The bare loop over all ``batches``; seconds (building its model and Adam excluded)."""
    return _consumed(bare_steps(batches, device, cell), device)


def _torch_adam(params: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=LR)


def trainer_epoch(
    data: SequenceDataset,
    device: torch.device,
    as_bare: bool = False,
    interleaver: Interleaver | None = None,
    cell: str = "rnn",
) -> float:
    """``Trainer.fit`` for one epoch with the progress bar on; seconds.

    With ``as_bare`` the fit does the bare loop's arithmetic: torch's own RNN layer instead of
    rnnkit's kernel, torch's default Adam instead of the Trainer's fused one. With an
    ``interleaver`` the fit runs its loops' steps between batches, and the seconds returned are
    the fit's less theirs.
    """
    model = _rnnkit_model(device, torch_layer=as_bare, cell=cell)
    trainer = Trainer(
        max_epochs=1,
        batch_size=BATCH_SIZE,
        optimizer=_torch_adam if as_bare else "adam",
        lr=LR,
        device=device,
        progress=True,
        callbacks=[] if interleaver is None else [interleaver],
    )
    start = perf_counter()
    history = trainer.fit(model, data)
    _sync(device)
    elapsed = perf_counter() - start
    print(f"  trainer: loss {history[0]['loss']:.4f}, accuracy {history[0]['accuracy']:.4f}")
    return elapsed if interleaver is None else elapsed - interleaver.total()


def warm_up(device: torch.device, cell: str = "rnn") -> None:
    """A few steps of the network both ways, so no timed run pays one-off set-up."""
    x, y = (
        torch.rand(BATCH_SIZE, 28, 28, device=device),
        torch.zeros(BATCH_SIZE, dtype=torch.long, device=device),
    )
    for fused in (False, True):
        model = _rnnkit_model(device, torch_layer=not fused, cell=cell)
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


def _report(times: dict[str, list[float]], cell: str = "rnn") -> bool:
    """Print the best and median times and their ratios; whether the best meet the targets."""
    met = True
    target = TUTORIAL_TARGETS[cell]
    for label, pick in (("best", min), ("median", statistics.median)):
        tutorial, bare, trainer = (pick(times[name]) for name in ("tutorial", "bare", "trainer"))
        print(f"{label:>6}: tutorial {tutorial:.2f} s, bare {bare:.2f} s, trainer {trainer:.2f} s")
        print(f"  trainer / tutorial = {trainer / tutorial:.3f} (target <= {target})")
        print(f"  trainer / bare     = {trainer / bare:.3f} (target <= {BARE_TARGET})")
        own = pick(times["trainer-torch"]) / bare
        print(f"  trainer-torch / bare = {own:.3f} (the Trainer's own cost, same arithmetic)")
        if label == "best":
            met = trainer / tutorial <= target and trainer / bare <= BARE_TARGET
    verdict = "met" if met else "NOT met"
    print(f"targets {verdict} (best times; trainer as shipped: rnnkit's kernel, fused Adam)")
    return met


RATIOS = {
    "trainer / tutorial": ("trainer", "tutorial", TUTORIAL_TARGETS["rnn"]),
    "trainer / bare": ("trainer", "bare", BARE_TARGET),
    "trainer-torch / bare": ("trainer-torch", "bare-2", None),
    "bare / tutorial": ("bare", "tutorial", None),
}
"""Each ratio the interleaved method reports: numerator, denominator, target (or none).

The target of ``trainer / tutorial`` is the plain RNN's; other cells use
:data:`TUTORIAL_TARGETS`.

``bare / tutorial`` is the floor of ``trainer / tutorial``: what the tutorial's arithmetic
alone takes of its loop, so any loop that does that arithmetic takes at least about as much.
"""


def _interleaved_fit(
    name: str,
    loops: dict[str, Iterator[None]],
    data: SequenceDataset,
    device: torch.device,
    every: int,
    cell: str = "rnn",
) -> dict[str, float]:
    """One fit with ``loops`` interleaved; its own time and each loop's, printed."""
    gc.collect()
    faults = _minor_faults()
    interleaver = Interleaver(loops, every)
    own = trainer_epoch(
        data, device, as_bare=name == "trainer-torch", interleaver=interleaver, cell=cell
    )
    times = {name: own, **interleaver.finish()}
    shown = ", ".join(f"{key} {value:.2f} s" for key, value in times.items())
    print(f"  {shown}  ({_minor_faults() - faults} minor page faults)")
    return times


def interleaved_rounds(
    root: Path,
    data: SequenceDataset,
    batches: list[tuple[Tensor, Tensor]],
    device: torch.device,
    repeats: int,
    max_batches: int | None = None,
    every: int = 25,
    cell: str = "rnn",
) -> dict[str, list[float]]:
    """Each ratio of :data:`RATIOS` over ``repeats`` rounds of two interleaved fits.

    A round fits once as shipped, the tutorial's loop and the bare loop interleaved, and once
    with the bare loop's arithmetic (trainer-torch) and a second bare loop, ``every`` steps
    at a time (see :class:`Interleaver`). The order of the two fits, and of the loops within
    the first, alternates from round to round.
    """
    ratios: dict[str, list[float]] = {name: [] for name in RATIOS}
    fits = {
        "trainer": lambda: {
            "tutorial": tutorial_steps(tutorial_dataset(root), device, max_batches, cell),
            "bare": bare_steps(batches, device, cell),
        },
        "trainer-torch": lambda: {"bare-2": bare_steps(batches, device, cell)},
    }
    for round_ in range(repeats):
        print(f"round {round_ + 1}/{repeats}")
        times: dict[str, float] = {}
        forward = round_ % 2 == 0
        for name in list(fits) if forward else list(reversed(fits)):
            loops = fits[name]()
            loops = loops if forward else dict(reversed(loops.items()))
            times.update(_interleaved_fit(name, loops, data, device, every, cell))
        for label, (top, bottom, _) in RATIOS.items():
            ratios[label].append(times[top] / times[bottom])
    return ratios


def report_ratios(ratios: dict[str, list[float]], cell: str = "rnn") -> bool:
    """Print each ratio's median and range over the rounds; whether the medians meet the targets."""
    met = True
    for label, values in ratios.items():
        median = statistics.median(values)
        target = TUTORIAL_TARGETS[cell] if label == "trainer / tutorial" else RATIOS[label][2]
        goal = "" if target is None else f" (target <= {target})"
        print(f"{label:>26} = {median:.3f}, rounds {min(values):.3f}-{max(values):.3f}{goal}")
        met = met and (target is None or median <= target)
    verdict = "met" if met else "NOT met"
    print(f"targets {verdict} (medians of the paired ratios; trainer as shipped)")
    return met


def main(argv: list[str] | None = None) -> int:
    parser = mnist_parser(__doc__.splitlines()[0])
    parser.add_argument("--max-batches", type=int, default=None, help="batches per run (smoke)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default 7)")
    parser.add_argument("--every", type=int, default=25, help="interleaved: steps per turn")
    parser.add_argument("--cell", choices=sorted(CELLS), default="rnn", help="the recurrent layer")
    parser.add_argument(
        "--method",
        choices=("interleaved", "sequential"),
        default=None,
        help="loops run inside the fit (CPU default) or whole epochs one after another",
    )
    args = parser.parse_args(argv)
    if not ready(args):
        return 1
    device = Trainer(device=args.device, progress=False).device
    method = args.method or ("sequential" if device.type == "cuda" else "interleaved")
    if method == "interleaved" and device.type == "cuda":
        print("--method interleaved times on the CPU only; use sequential.", file=sys.stderr)
        return 2
    data = image_sequences(MNIST(str(args.root), train=True, download=False), "rows")
    if args.max_batches is not None:
        data = data.subset(torch.arange(min(len(data), args.max_batches * BATCH_SIZE)))
    batches = premade_batches(data, device, args.max_batches)
    print(
        f"MNIST rows, {len(batches)} batches of {BATCH_SIZE}, device {device}, "
        f"{torch.get_num_threads()} threads, method {method}, cell {args.cell}"
    )
    warm_up(device, args.cell)
    repeats = args.repeats or 7
    if method == "interleaved":
        rounds = interleaved_rounds(
            args.root, data, batches, device, repeats, args.max_batches, args.every, args.cell
        )
        report_ratios(rounds, args.cell)
    else:
        runs = sequential_runs(args.root, data, batches, device, args.max_batches, args.cell)
        _report(_rounds(runs, repeats), args.cell)
    return 0


def sequential_runs(
    root: Path,
    data: SequenceDataset,
    batches: list[tuple[Tensor, Tensor]],
    device: torch.device,
    max_batches: int | None,
    cell: str = "rnn",
) -> dict[str, Callable[[], float]]:
    """The four runs of the sequential method, each timing one whole epoch."""
    return {
        "tutorial": lambda: tutorial_epoch(root, device, max_batches, cell),
        "bare": lambda: bare_epoch(batches, device, cell),
        "trainer": lambda: trainer_epoch(data, device, cell=cell),
        "trainer-torch": lambda: trainer_epoch(data, device, as_bare=True, cell=cell),
    }


if __name__ == "__main__":
    sys.exit(main())
