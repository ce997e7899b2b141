"""Callbacks: code the Trainer calls at fixed points of a run.

Holds the :class:`~rnnkit.Callback` base class (hooks that do nothing until overridden), the
built-in callbacks, :class:`~rnnkit.ModelCheckpoint`, the loggers
(:class:`~rnnkit.callbacks.CSVLogger`, :class:`~rnnkit.callbacks.TensorBoardLogger`) and
:class:`~rnnkit.callbacks.GradientFlow`. May import ``rnnkit.io``, ``rnnkit.tasks``,
:mod:`rnnkit.metrics` and the layers below them; never ``rnnkit.training`` (a callback
receives the Trainer at run time, it does not import it).
"""

from __future__ import annotations

from rnnkit.callbacks._base import Callback, LearningRateMonitor, ProgressBar
from rnnkit.callbacks._early_stopping import EarlyStopping
from rnnkit.callbacks._log_keys import LogKeys
from rnnkit.callbacks.gradient_flow import FlowRecord, GradientFlow, measure_gradient_flow
from rnnkit.callbacks.loggers import CSVLogger, TensorBoardLogger
from rnnkit.callbacks.model_checkpoint import ModelCheckpoint

__all__ = [
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "FlowRecord",
    "GradientFlow",
    "LearningRateMonitor",
    "LogKeys",
    "ModelCheckpoint",
    "ProgressBar",
    "TensorBoardLogger",
    "measure_gradient_flow",
]
