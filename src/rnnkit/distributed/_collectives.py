"""Collectives on the default process group that degrade to identities in a single process.

Public names are re-exported by :mod:`rnnkit.distributed`. Every function here is safe to call
without a process group: it then acts as if the job had one rank.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "all_gather_object",
    "all_reduce_named_sums",
    "all_reduce_sums",
    "any_rank",
    "barrier",
    "broadcast_object",
    "get_rank",
    "get_world_size",
    "is_global_zero",
    "is_initialized",
    "loss_weight",
    "rank_zero_print",
]

_T = TypeVar("_T")


def is_initialized() -> bool:
    """True when a default process group exists in this process."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's global rank; 0 outside a process group."""
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    """Number of processes in the group; 1 outside a process group."""
    return dist.get_world_size() if is_initialized() else 1


def is_global_zero() -> bool:
    """True on rank 0 and in a single process: the rank that writes files and prints."""
    return get_rank() == 0


def rank_zero_print(*args: Any, **kwargs: Any) -> None:
    """``print(*args, **kwargs)`` on rank 0 only."""
    if is_global_zero():
        print(*args, **kwargs)


def _collective_device() -> torch.device:
    """The device collectives must use: the current GPU for nccl, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait until every rank arrives here; returns at once in a single process."""
    if not is_initialized():
        return
    device = _collective_device()
    dist.barrier(device_ids=[device.index] if device.type == "cuda" else None)


def all_reduce_sums(tensors: Sequence[Tensor]) -> list[Tensor]:
    """Sum each tensor over all ranks in one collective: metric ``(sum, count)`` pairs.

    Values travel as float64 (counts stay exact up to 2**53) and come back in each tensor's
    own dtype and device. The inputs are not modified. Every rank must call it, with the same
    shapes, the same number of times.

    Args:
        tensors: The per-rank partial sums, any shapes.

    Returns:
        New tensors holding the sums over ranks (copies of the inputs in a single process).

    Shapes:
        tensors[i]: any shape ``S_i``; returns[i]: ``S_i``.
    """
    if not is_initialized() or not tensors:
        return [t.detach().clone() for t in tensors]
    device = _collective_device()
    flat = torch.cat([t.detach().reshape(-1).to(device, torch.float64) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    sizes = [t.numel() for t in tensors]
    parts = torch.split(flat, sizes)
    return [p.reshape(t.shape).to(t.device, t.dtype) for p, t in zip(parts, tensors, strict=True)]


def all_reduce_named_sums(
    parts: Mapping[str, tuple[float, float]],
) -> dict[str, tuple[float, float]]:
    """Sum named ``(sum, count)`` pairs over ranks; the names are united across ranks.

    For epoch totals: a rank with no validation sample (an empty part) may pass ``{}`` and
    still receives every name. Two collectives (the names, then the values in float64).

    Args:
        parts: ``{name: (sum, count)}`` of this rank.

    Returns:
        ``{name: (sum over ranks, count over ranks)}``, names in rank 0's order first.
    """
    if not is_initialized():
        return {name: (float(total), float(count)) for name, (total, count) in parts.items()}
    gathered: list[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, list(parts))
    names = list(dict.fromkeys(name for rank_names in gathered for name in rank_names))
    values = [float(v) for name in names for v in parts.get(name, (0.0, 0.0))]
    flat = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    out = flat.tolist()
    return {name: (out[2 * i], out[2 * i + 1]) for i, name in enumerate(names)}


def loss_weight(count: Tensor | float) -> Tensor:
    """``world_size · count / (count summed over ranks)``: the factor for this rank's mean loss.

    For a loss averaged over ``count`` units on this rank (samples, or valid steps of padded
    sequences), ``loss * loss_weight(count)`` makes DDP's gradient average equal the mean over
    all ranks' units, as one process would compute it. Pass 0 for a filler shard. One small
    collective, no host synchronisation. In a single process it returns 1.

    Shapes:
        count: ``()``; returns: ``()``, float32, on the collective device.
    """
    if not is_initialized():
        return torch.ones(())
    device = _collective_device()
    if isinstance(count, Tensor):
        local = count.detach().to(device, torch.float32).reshape(())
    else:  # made on the device: no host-to-device copy, no wait for the GPU
        local = torch.full((), float(count), dtype=torch.float32, device=device)
    total = local.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return get_world_size() * local / total.clamp_min(1e-12)


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on at least one (a decision taken together)."""
    if not is_initialized():
        return flag
    value = torch.tensor([int(flag)], device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def all_gather_object(obj: _T) -> list[_T]:
    """Every rank's ``obj``, in rank order (pickled; ``[obj]`` without a process group)."""
    if not is_initialized():
        return [obj]
    gathered: list[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: _T, src: int = 0) -> _T:
    """Return rank ``src``'s ``obj`` on every rank (pickled; for small objects: seeds, paths)."""
    if not is_initialized():
        return obj
    box: list[Any] = [obj]
    dist.broadcast_object_list(box, src=src, device=_collective_device())
    return cast("_T", box[0])
