"""One function finds the user's model inside every wrapper rnnkit meets."""

from __future__ import annotations

import torch
from torch import nn

import rnnkit
from rnnkit.distributed import unwrap_model as distributed_unwrap
from rnnkit.distributed._wrapping import _MethodRouter
from rnnkit.models.base import unwrap_model


def test_unwraps_nested_wrappers_of_every_kind() -> None:
    model = rnnkit.SequenceClassifier(3, 2, hidden_size=4)
    wrapped: nn.Module = nn.DataParallel(_MethodRouter(torch.compile(model)))  # type: ignore[arg-type]
    assert unwrap_model(wrapped) is model
    assert unwrap_model(model) is model


def test_a_module_with_a_model_attribute_is_not_a_wrapper() -> None:
    outer = nn.Module()
    outer.model = nn.Linear(2, 2)
    assert unwrap_model(outer) is outer


def test_the_distributed_name_is_the_same_function() -> None:
    assert distributed_unwrap is unwrap_model
