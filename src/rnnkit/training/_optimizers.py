"""Building the Trainer's optimizer and resolving its device."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["OPTIMIZERS", "named_optimizer", "resolve_device"]

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}

_FUSED = frozenset({"adam", "adamw"})
"""Named optimizers built with ``fused=True`` where every parameter allows it."""


def named_optimizer(
    name: str,
    params: list[nn.Parameter],
    lr: float,
    fused: bool | None = None,
    weight_decay: float | None = None,
) -> torch.optim.Optimizer:
    """``optimizer=name``: torch's optimizer; Adam and AdamW fused on CPU and CUDA.

    ``weight_decay=None`` keeps torch's default for that optimizer (0.01 for AdamW, 0 for the
    others). The fused kernel updates all parameters in one pass; its results differ from torch's
    default implementation only in the last bits. ``fused=False`` (a resumed run saved with
    the default implementation) keeps the default: a fused optimizer that loads an unfused
    state would hand the gradient scaler's arguments to the unfused update.
    """
    kwargs: dict[str, float | bool] = {"lr": lr}
    if weight_decay is not None:
        kwargs["weight_decay"] = weight_decay
    if name in _FUSED and fused is not False and _fusable(params):
        kwargs["fused"] = True
    return OPTIMIZERS[name](params, **kwargs)


def _fusable(params: list[nn.Parameter]) -> bool:
    """Whether torch's fused Adam accepts these parameters (floating point, CPU or CUDA)."""
    return bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )


def resolve_device(device: torch.device) -> torch.device:
    """The device the strategy chose, checked; CUDA with an explicit index."""
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise ValueError(
            f"Expected an available device, but got device={str(device)!r} and CUDA is not "
            "available here. Hint: device='auto' picks CUDA when present, else the CPU."
        )
    if str(device) == "cuda":  # no index: the current device, named explicitly
        return torch.device("cuda", torch.cuda.current_device())
    return device
