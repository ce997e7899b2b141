"""rnnkit: a typed PyTorch toolkit for recurrent sequence models.

The public names are listed in ``__all__``; everything else is internal.
"""

from __future__ import annotations

from rnnkit._version import __version__
from rnnkit.errors import CheckpointError, RnnkitError, ShapeError, TrainingDivergedError

__all__ = [
    "CheckpointError",
    "RnnkitError",
    "ShapeError",
    "TrainingDivergedError",
    "__version__",
]
