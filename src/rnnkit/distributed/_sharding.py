"""Sharding an epoch over ranks: each rank's batches, loss weights and evaluation part.

Public names are re-exported by :mod:`rnnkit.distributed`, which explains the scheme.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["Shard", "eval_indices", "num_global_batches", "shard_indices"]


class Shard(NamedTuple):
    """One rank's part of one global batch (a named tuple ``(indices, weight, global_size)``).

    Shapes:
        indices: ``(n_rank,)``, int64, never empty.
    """

    indices: Tensor
    """This rank's sample indices, never empty; shape ``(n_rank,)``, int64."""
    weight: float
    """Factor for this rank's mean loss before ``backward``.

    It is ``world_size · n_rank / m`` for a global batch of ``m`` real samples: 1.0 for every
    full batch, 0.0 for a filler.
    """
    global_size: int
    """``m``, the number of real samples in the whole global batch."""

    @property
    def is_filler(self) -> bool:
        """True when ``indices`` is a stand-in sample with weight 0; skip it in the metrics."""
        return self.weight == 0.0


def num_global_batches(n: int, batch_size: int, world_size: int, drop_last: bool = False) -> int:
    """Number of steps per epoch, the same on every rank.

    Args:
        n: Number of samples.
        batch_size: Per-rank batch size.
        world_size: Number of ranks.
        drop_last: Drop a last global batch shorter than ``batch_size × world_size``.
    """
    global_batch = batch_size * world_size
    return n // global_batch if drop_last else -(-n // global_batch)


def shard_indices(
    permutation: Tensor, rank: int, world_size: int, batch_size: int, drop_last: bool = False
) -> list[Shard]:
    """This rank's batches of one epoch, drawn from a permutation shared by all ranks.

    Global batch ``b`` is ``permutation[b·B_g:(b+1)·B_g]`` with ``B_g = batch_size ×
    world_size``; this rank receives its ``rank``-th contiguous part (see the module text).

    Args:
        permutation: The epoch's sample order, identical on every rank. Shape ``(n,)``.
        rank: This process's rank.
        world_size: Number of ranks.
        batch_size: Per-rank batch size.
        drop_last: Drop a short last global batch instead of splitting it.

    Returns:
        ``num_global_batches(n, batch_size, world_size, drop_last)`` shards: every rank gets
        the same count.

    Raises:
        ValueError: A non-1-D permutation, ``batch_size < 1`` or a rank out of range.

    Shapes:
        permutation: ``(n,)``, int64; each shard's ``indices``: ``(n_rank,)``, int64.
    """
    _check_shard_args(permutation, rank, world_size, batch_size)
    global_batch = batch_size * world_size
    steps = num_global_batches(permutation.numel(), batch_size, world_size, drop_last)
    return [
        _shard_of(permutation[b * global_batch : (b + 1) * global_batch], rank, world_size)
        for b in range(steps)
    ]


def _check_shard_args(permutation: Tensor, rank: int, world_size: int, batch_size: int) -> None:
    """Validate the arguments of :func:`shard_indices`."""
    if permutation.dim() != 1:
        raise ValueError(
            f"Expected `permutation` to have shape (n,), but got {tuple(permutation.shape)}. "
            "Hint: pass torch.randperm(len(dataset), generator=g)."
        )
    if batch_size < 1:
        raise ValueError(f"Expected `batch_size` >= 1, but got {batch_size}.")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"Expected 0 <= `rank` < `world_size`, but got rank={rank}, world_size={world_size}."
        )


def _shard_of(global_indices: Tensor, rank: int, world_size: int) -> Shard:
    """Split one global batch as evenly as possible and return this rank's part."""
    size = global_indices.numel()
    part = torch.tensor_split(global_indices, world_size)[rank]
    if part.numel() == 0:
        return Shard(global_indices[:1], 0.0, size)
    return Shard(part, world_size * part.numel() / size, size)


def eval_indices(n: int, rank: int, world_size: int) -> Tensor:
    """This rank's contiguous, disjoint part of ``range(n)`` for evaluation (no padding).

    The parts of all ranks concatenate to ``range(n)``; a part may be empty when
    ``n < world_size`` (the rank must still join :func:`all_reduce_sums`).

    Shapes:
        returns: ``(n_rank,)``, int64, with ``n_rank`` = ``n // world_size`` or one more.
    """
    return torch.tensor_split(torch.arange(n), world_size)[rank]


Shard.__module__ = "rnnkit.distributed"  # documented (and pickled) under its public home
