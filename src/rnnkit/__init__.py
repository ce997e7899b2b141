"""rnnkit: a typed PyTorch toolkit for recurrent sequence models.

The public names are listed in ``__all__``; everything else is internal.
"""

from __future__ import annotations

from rnnkit._version import __version__
from rnnkit.callbacks import Callback, EarlyStopping, LearningRateMonitor, ProgressBar
from rnnkit.checkpoint import (
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CheckpointValueError,
    CheckpointVersionError,
    CheckpointWriteError,
    CorruptCheckpointError,
    ForeignCheckpointError,
    ModelCheckpoint,
    load_checkpoint,
    load_model,
)
from rnnkit.data import Batch, SequenceDataset
from rnnkit.distributed import DistributedContext
from rnnkit.errors import CheckpointError, RnnkitError, ShapeError, TrainingDivergedError
from rnnkit.history import History
from rnnkit.models import RecurrentEncoder, Seq2SeqRegressor, SequenceClassifier
from rnnkit.shapes import RecurrentSpec, validate_class_targets, validate_step_targets
from rnnkit.trainer import Trainer

__all__ = [
    "Batch",
    "Callback",
    "CheckpointError",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "CheckpointValueError",
    "CheckpointVersionError",
    "CheckpointWriteError",
    "CorruptCheckpointError",
    "DistributedContext",
    "EarlyStopping",
    "ForeignCheckpointError",
    "History",
    "LearningRateMonitor",
    "ModelCheckpoint",
    "ProgressBar",
    "RecurrentEncoder",
    "RecurrentSpec",
    "RnnkitError",
    "Seq2SeqRegressor",
    "SequenceClassifier",
    "SequenceDataset",
    "ShapeError",
    "Trainer",
    "TrainingDivergedError",
    "__version__",
    "load_checkpoint",
    "load_model",
    "validate_class_targets",
    "validate_step_targets",
]
