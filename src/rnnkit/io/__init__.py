"""Files: the checkpoint format, safe checked loads and atomic writes.

:mod:`rnnkit.io.checkpoint` defines what a checkpoint holds and how it is read back without
running pickled code; ``rnnkit.io._atomic`` writes any file so that a crash leaves the old file
or the new one, never a mix. May import :mod:`rnnkit.models` (to rebuild a saved model) and the
layers below; never a callback or the Trainer.
"""

from __future__ import annotations

from rnnkit.io.checkpoint import load_checkpoint, load_model

__all__ = ["load_checkpoint", "load_model"]
