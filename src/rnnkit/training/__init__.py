"""Training: the Trainer, its loop, the run state it saves, and the History it returns.

The Trainer (:mod:`rnnkit.training.trainer`) composes the parts it needs: a run state with its
own ``state_dict`` (``_state``), the loop that runs training and evaluation steps (``_loops``),
batch sources (``_batches``), checks made before any work (``_checks``) and precision, RNG and
running totals helpers. This is the top layer: it may import every other subpackage; none may
import it.
"""

from __future__ import annotations

from rnnkit.training.history import History
from rnnkit.training.trainer import Trainer

__all__ = ["History", "Trainer"]
