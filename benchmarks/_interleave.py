"""Time other training loops inside a ``Trainer.fit``, a few steps at a time.

:class:`Interleaver` is a callback for ``benchmarks/trainer_vs_loop.py``: running the other
loops inside the Trainer's epoch makes the machine's slow spells hit them all alike, so their
ratios to the Trainer can be read round by round.
"""

from __future__ import annotations

from collections.abc import Iterator
from time import perf_counter
from typing import Any

from rnnkit.callbacks import Callback

_DONE = object()


class Interleaver(Callback):
    """After every ``every`` of the Trainer's batches, as many steps of each other loop.

    The loops then meet the machine's slow spells (seconds long) together with the Trainer,
    and their time, subtracted from the fit's, leaves the Trainer's own. Each switch costs
    the loop that resumes a little (cold caches and threads), and a cost added to both sides
    of a ratio pulls it toward 1; runs of ``every`` steps keep switches rare (18 per loop in
    an MNIST epoch with the default 25). A CPU measurement: on CUDA the runs would need a
    synchronisation each.

    Args:
        loops: Each loop's name and its steps: a generator that takes one step per ``next()``.
        every: Steps per run.
    """

    def __init__(self, loops: dict[str, Iterator[None]], every: int = 25) -> None:
        self.loops = dict(loops)
        self.every = every
        self.seconds = dict.fromkeys(loops, 0.0)

    def on_batch_end(self, trainer: Any, batch_idx: int, outputs: dict[str, Any]) -> None:
        """Every ``every`` batches, run as many steps of each loop."""
        if (batch_idx + 1) % self.every == 0:
            self.step()

    def step(self) -> bool:
        """Up to ``every`` steps of each loop not yet finished; whether any is left."""
        for name, loop in list(self.loops.items()):
            start = perf_counter()
            finished = any(next(loop, _DONE) is _DONE for _ in range(self.every))
            self.seconds[name] += perf_counter() - start
            if finished:
                del self.loops[name]
        return bool(self.loops)

    def total(self) -> float:
        """Seconds spent in the loops so far."""
        return sum(self.seconds.values())

    def finish(self) -> dict[str, float]:
        """Run the loops to their end (if the fit had fewer batches); each loop's seconds."""
        while self.step():
            pass
        return self.seconds
