"""Check a saved model config before any model is built from it.

A checkpoint's config is untrusted data: a field of the wrong type would fail deep inside a
constructor, and a size that disagrees with the weights (``hidden_size=100000`` over
``(8, 3)`` weights) would allocate gigabytes before the mismatch is noticed. So the fields
are checked against the config class's annotations, then the model is built on PyTorch's
``meta`` device (shapes only, no memory) and compared with the saved weights; only a config
that passes both is built for real.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from rnnkit.errors import CheckpointError

if TYPE_CHECKING:
    from rnnkit.models.base import RecurrentModel
    from rnnkit.models.config import ModelConfig

__all__ = ["build_on_meta", "check_config_values", "count_problems"]

_BOUNDED_BY_WEIGHTS = ("num_layers",)  # each layer holds at least one saved tensor


def _type_text(value: object) -> str:
    return f"a {type(value).__name__} {value!r}"


def _value_error(key: str, value: object, expected: object) -> str | None:
    """Why ``value`` cannot be the field's ``expected`` type, or ``None`` when it can."""
    if typing.get_origin(expected) is typing.Literal:
        choices = typing.get_args(expected)
        if value in choices and type(value) is type(choices[0]):
            return None
        listed = ", ".join(repr(choice) for choice in choices)
        shown = repr(value) if isinstance(value, str) else _type_text(value)
        return f"config[{key!r}] is {shown}, expected one of {listed}"
    ok = {
        int: type(value) is int,
        float: type(value) in (int, float),
        bool: type(value) is bool,
        str: type(value) is str,
    }.get(expected if isinstance(expected, type) else object, True)
    if ok:
        return None
    name = expected.__name__ if isinstance(expected, type) else str(expected)
    return f"config[{key!r}] is {_type_text(value)}, expected {name}"


def check_config_values(config_class: type[ModelConfig], config: Mapping[str, Any]) -> list[str]:
    """Every problem of ``config`` as ``config_class``'s fields: unknown, missing, wrong type.

    Returns:
        One line per problem; empty when the config is well-formed.
    """
    hints = typing.get_type_hints(config_class)
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    problems = [f"unknown key {key!r}" for key in config if key not in fields and key != "model"]
    for name, field in fields.items():
        if name not in config:
            if field.default is dataclasses.MISSING:
                problems.append(f"missing key {name!r}")
            continue
        problem = _value_error(name, config[name], hints[name])
        if problem is not None:
            problems.append(problem)
    return problems


def count_problems(config: Mapping[str, Any], state_dict: Mapping[str, Any]) -> list[str]:
    """Fields that count modules, each bounded by the number of saved tensors.

    So a tampered ``num_layers`` cannot make even a shape-only build take minutes.

    Returns:
        One line per field beyond its bound; empty when none is.
    """
    problems = []
    for name in _BOUNDED_BY_WEIGHTS:
        value = config.get(name)
        if type(value) is int and value > len(state_dict):
            problems.append(
                f"config[{name!r}] is {value}, but the weights hold only {len(state_dict)} tensors"
            )
    return problems


def build_on_meta(cls: type[RecurrentModel], config: Mapping[str, Any]) -> nn.Module:
    """Build ``cls`` from ``config`` on the meta device: parameter shapes, no memory.

    Raises:
        rnnkit.errors.CheckpointError: The constructor refuses the config (its message), or
            torch cannot even describe the shapes (sizes whose element count overflows).
    """
    try:
        with torch.device("meta"):
            return cls.from_config(config)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(str(exc)) from exc
    except (RuntimeError, OverflowError, NotImplementedError) as exc:
        raise CheckpointError(
            f"Expected a model config whose tensors torch can build, but building it failed: "
            f"{exc}. Hint: the checkpoint's config is damaged; use another checkpoint."
        ) from exc
