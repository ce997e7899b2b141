"""The DDP wrapper of :meth:`rnnkit.distributed.DistributedContext.wrap_model`.

Public names are re-exported by :mod:`rnnkit.distributed`. DDP averages gradients only for
calls that go through its ``forward``; the wrapper here routes any method of the bare model
through it and exposes the bare model's attributes.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from torch import nn
from torch.nn.parallel import DistributedDataParallel

from rnnkit.models.base import unwrap_model

__all__ = ["RoutingDDP", "run_method", "unwrap_model"]

_METHOD_KEY = "_rnnkit_method"


class _MethodRouter(nn.Module):
    """Routes DDP's forward to any method of the model, so every training call syncs."""

    _rnnkit_wrapper = True  # unwrap_model looks for `model` inside

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Call ``model.<kwargs.pop('_rnnkit_method', 'forward')>(*args, **kwargs)``."""
        method = kwargs.pop(_METHOD_KEY, "forward")
        return getattr(self.model, method)(*args, **kwargs)


class RoutingDDP(DistributedDataParallel):
    """DDP that also exposes the bare model's attributes; its methods run through DDP.

    ``wrapped.batch_first`` reads the bare model's attribute, and ``wrapped.rollout(...)``
    runs ``rollout`` inside DDP's forward (as :func:`run_method` does), so code written for
    the bare model works on the wrapper and its gradients are averaged.

    Args:
        model: The bare model, on the rank's device.
        **ddp_options: Passed to :class:`~torch.nn.parallel.DistributedDataParallel`.
    """

    def __init__(self, model: nn.Module, **ddp_options: Any) -> None:
        super().__init__(_MethodRouter(model), **ddp_options)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            router = self.__dict__.get("_modules", {}).get("module")
            if name.startswith("_") or not isinstance(router, _MethodRouter):
                raise
        value = getattr(router.model, name)
        if inspect.ismethod(value) and value.__self__ is router.model:
            return functools.partial(run_method, self, name)
        return value


def run_method(model: nn.Module, method: str, *args: Any, **kwargs: Any) -> Any:
    """Call ``method`` of a wrapped model through DDP's forward, so its gradients sync.

    Calling ``ddp.module.rollout(...)`` directly would skip DDP's bookkeeping: the gradients
    would silently not be averaged. ``run_method(train_model, "rollout", x, ratio)`` works in
    both modes.

    Args:
        model: A wrapper from :meth:`DistributedContext.wrap_model`, or a bare model.
        method: The name of the bare model's method.
        *args: Its positional arguments.
        **kwargs: Its keyword arguments.

    Returns:
        What the method returns.
    """
    if isinstance(model, DistributedDataParallel):
        return model(*args, **{_METHOD_KEY: method}, **kwargs)
    return getattr(model, method)(*args, **kwargs)
