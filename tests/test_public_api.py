"""Every public name keeps importing from ``rnnkit`` across the restructuring into layers."""

from __future__ import annotations

import importlib

import pytest

import rnnkit

# rnnkit.__all__ before the code moved into subpackages; a user's `from rnnkit import X` must
# keep working for each.
NAMES_BEFORE_THE_LAYERS = [
    "Batch", "Callback", "CheckpointError", "CheckpointMismatchError", "CheckpointNotFoundError",
    "CheckpointValueError", "CheckpointVersionError", "CheckpointWriteError",
    "CorruptCheckpointError", "DistributedContext", "EarlyStopping", "ForeignCheckpointError",
    "History", "LearningRateMonitor", "ModelCheckpoint", "ProgressBar", "RecurrentEncoder",
    "RecurrentSpec", "RnnkitError", "Seq2SeqRegressor", "SequenceClassifier", "SequenceDataset",
    "ShapeError", "Trainer", "TrainingDivergedError", "__version__", "load_checkpoint",
    "load_model", "validate_class_targets", "validate_step_targets",
]  # fmt: skip


@pytest.mark.parametrize("name", NAMES_BEFORE_THE_LAYERS)
def test_each_earlier_public_name_still_imports(name: str) -> None:
    assert name in rnnkit.__all__
    assert getattr(rnnkit, name) is not None


def test_all_lists_only_names_that_exist() -> None:
    missing = [name for name in rnnkit.__all__ if not hasattr(rnnkit, name)]
    assert missing == []


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("rnnkit.callbacks", "Callback"),
        ("rnnkit.callbacks", "ModelCheckpoint"),
        ("rnnkit.data", "SequenceDataset"),
        ("rnnkit.distributed", "DistributedContext"),
        ("rnnkit.errors", "CorruptCheckpointError"),
        ("rnnkit.io", "load_model"),
        ("rnnkit.models", "SequenceClassifier"),
        ("rnnkit.shapes", "RecurrentSpec"),
        ("rnnkit.training", "Trainer"),
        ("rnnkit.training", "History"),
    ],
)
def test_subpackages_export_the_same_objects(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(rnnkit, name)
