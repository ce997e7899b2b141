"""rnnkit: a typed PyTorch toolkit for recurrent sequence models.

The public names are listed in ``__all__``; everything else is internal. The subpackages are
the layers, lowest first: :mod:`rnnkit.errors`; :mod:`rnnkit.shapes`, :mod:`rnnkit.data` and
:mod:`rnnkit.metrics`; :mod:`rnnkit.kernels`; :mod:`rnnkit.models`; :mod:`rnnkit.io`;
:mod:`rnnkit.tasks`, :mod:`rnnkit.distributed` and :mod:`rnnkit.export`;
:mod:`rnnkit.callbacks`; and :mod:`rnnkit.training`. A module imports only from its own layer
and those below it; ``rnnkit._validate`` (argument checks) sits beside :mod:`rnnkit.errors`.
"""

from __future__ import annotations

from rnnkit._version import __version__
from rnnkit.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
)
from rnnkit.data import Batch, SequenceDataset
from rnnkit.distributed import DistributedContext
from rnnkit.errors import (
    CheckpointError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CheckpointValueError,
    CheckpointVersionError,
    CheckpointWriteError,
    CorruptCheckpointError,
    ForeignCheckpointError,
    KernelUnavailableError,
    RnnkitError,
    ShapeError,
    TrainingDivergedError,
)
from rnnkit.io import load_checkpoint, load_model
from rnnkit.models import RecurrentEncoder, Seq2SeqRegressor, SequenceClassifier, SequenceTagger
from rnnkit.shapes import (
    RecurrentSpec,
    validate_class_targets,
    validate_step_targets,
    validate_tag_targets,
)
from rnnkit.training import History, Trainer

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
    "KernelUnavailableError",
    "LearningRateMonitor",
    "ModelCheckpoint",
    "ProgressBar",
    "RecurrentEncoder",
    "RecurrentSpec",
    "RnnkitError",
    "Seq2SeqRegressor",
    "SequenceClassifier",
    "SequenceDataset",
    "SequenceTagger",
    "ShapeError",
    "Trainer",
    "TrainingDivergedError",
    "__version__",
    "load_checkpoint",
    "load_model",
    "validate_class_targets",
    "validate_step_targets",
    "validate_tag_targets",
]
