"""Training: the Trainer, its loop, the run state it saves, and the History it returns.

The Trainer (:mod:`rnnkit.training.trainer`) composes the parts it needs: the run state with
its own ``state_dict`` (:class:`RunState`), the loops as plain functions (``_loops``) that read
what the steps return (:class:`StepOutput`), its less common settings
(:class:`TrainerOptions`), fit preparation (``_setup``), checkpoint rules
(``_checkpointing``), batch sources (``_batches``), checks made before any work (``_checks``)
and precision, RNG, divergence and running totals helpers. This is the top layer: it may
import every other subpackage; none may import it.
"""

from __future__ import annotations

from rnnkit.training._lr_find import LRFinderResult
from rnnkit.training._options import TrainerOptions
from rnnkit.training._state import RunState
from rnnkit.training._steps import StepOutput
from rnnkit.training.history import History
from rnnkit.training.trainer import Trainer

__all__ = ["History", "LRFinderResult", "RunState", "StepOutput", "Trainer", "TrainerOptions"]
