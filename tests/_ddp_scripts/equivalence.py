"""DDP on 2 ranks vs one process on the same global batches (run under torchrun).

Every rank trains :class:`TinyClassifier` (mean cross-entropy, ``shard.weight``) and
:class:`TinyRegressor` (MSE over the valid steps of variable-length series,
``ctx.loss_weight(valid elements)``, its ``scaled`` method called on the wrapper or through
``run_method``) with DDP on its shards;
rank 1 starts from other weights, so equal results also show that DDP copied rank 0's
weights. Rank 0 then trains the single-process references with plain
``torch.split(perm, global_batch)`` batches (no rnnkit code). Each rank saves ``rank{r}.pt``
under OUT; rank 0 also saves ``reference.pt``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from _ddp_common import (
    PER_RANK_BATCH,
    TinyRegressor,
    epoch_permutation,
    make_data,
    make_model,
    make_regressor,
    make_series,
    masked_mse,
)
from torch import Tensor, nn

from rnnkit.distributed import DistributedContext, run_method, unwrap_model

SIZES = (37, 33)  # last global batch of 5 (split 3 + 2) and of 1 (rank 1 gets a filler)
EPOCHS = 2
VAL_SIZES = (13, 1)  # 7 + 6 samples, and 1 + 0 (an empty part on rank 1)


def train_ddp(ctx: DistributedContext, n: int) -> dict[str, Tensor]:
    """Train with DDP on this rank's shards; return the bare model's weights."""
    model = make_model(seed=ctx.rank)
    wrapped = ctx.wrap_model(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = make_data(n, seed=n)
    for epoch in range(EPOCHS):
        for shard in ctx.shard(epoch_permutation(n, epoch), PER_RANK_BATCH):
            loss = F.cross_entropy(wrapped(x[shard.indices]), y[shard.indices])
            optimizer.zero_grad()
            torch.autograd.backward(loss * shard.weight)
            optimizer.step()
    return {k: v.detach().clone() for k, v in unwrap_model(wrapped).state_dict().items()}


def train_ddp_regressor(ctx: DistributedContext, n: int) -> dict[str, Tensor]:
    """Train the regressor with DDP, weighting each rank's loss by its valid elements."""
    model = make_regressor(seed=ctx.rank)
    wrapped = ctx.wrap_model(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y, lengths = make_series(n, seed=n)
    for epoch in range(EPOCHS):
        for shard in ctx.shard(epoch_permutation(n, epoch), PER_RANK_BATCH):
            idx = shard.indices
            if n % 2:  # the wrapper's attribute (DDP routes it), else run_method
                pred = cast("TinyRegressor", wrapped).scaled(x[idx], factor=1.0)
            else:
                pred = run_method(wrapped, "scaled", x[idx], factor=1.0)
            loss = masked_mse(pred, y[idx], lengths[idx])
            count = 0 if shard.is_filler else int(lengths[idx].sum())
            optimizer.zero_grad()
            torch.autograd.backward(loss * ctx.loss_weight(count))
            optimizer.step()
    return {k: v.detach().clone() for k, v in unwrap_model(wrapped).state_dict().items()}


def train_reference_regressor(n: int, world_size: int) -> nn.Module:
    """One process, global batches, MSE over all valid steps of the global batch."""
    model = make_regressor(seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y, lengths = make_series(n, seed=n)
    for epoch in range(EPOCHS):
        for idx in torch.split(epoch_permutation(n, epoch), PER_RANK_BATCH * world_size):
            loss = masked_mse(model(x[idx]), y[idx], lengths[idx])
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            optimizer.step()
    return model


def train_reference(n: int, world_size: int) -> nn.Module:
    """One process, global batches of PER_RANK_BATCH x world_size, mean loss."""
    model = make_model(seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = make_data(n, seed=n)
    for epoch in range(EPOCHS):
        for idx in torch.split(epoch_permutation(n, epoch), PER_RANK_BATCH * world_size):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            optimizer.step()
    return model


@torch.no_grad()
def val_sums(model: nn.Module, indices: Tensor, n: int) -> list[Tensor]:
    """Per-rank (correct, count, loss sum) over ``indices`` of a val set of ``n``."""
    x, y = make_data(n, seed=500 + n)
    correct, count, loss_sum = torch.zeros(()), torch.zeros((), dtype=torch.int64), torch.zeros(())
    for chunk in torch.split(indices, PER_RANK_BATCH):
        logits = model(x[chunk])
        correct += (logits.argmax(-1) == y[chunk]).sum()
        count += chunk.numel()
        loss_sum += F.cross_entropy(logits, y[chunk], reduction="sum")
    return [correct, count, loss_sum]


def main(out: Path) -> None:
    ctx = DistributedContext("ddp", device="cpu", timeout=60).setup()
    result: dict[str, Any] = {"rank": ctx.rank, "world_size": ctx.world_size}
    for n in SIZES:
        weights = train_ddp(ctx, n)
        result[f"weights_{n}"] = weights
        model = make_model(seed=0)
        model.load_state_dict(weights)
        for v in VAL_SIZES:
            sums = ctx.all_reduce_sums(val_sums(model, ctx.eval_indices(v), v))
            result[f"val_{n}_{v}"] = sums
        result[f"regressor_{n}"] = train_ddp_regressor(ctx, n)
    result["named"] = ctx.all_reduce_named_sums(
        {"loss": (1.0 + ctx.rank, 2.0)} | ({"extra": (5.0, 1.0)} if ctx.rank == 1 else {})
    )
    result["named_empty"] = ctx.all_reduce_named_sums({} if ctx.rank == 0 else {"a": (1.0, 3.0)})
    result["any_rank_1"] = ctx.any_rank(ctx.rank == 1)
    result["any_none"] = ctx.any_rank(False)
    result["seed"] = ctx.shared_seed(1234 + ctx.rank)
    result["object"] = ctx.broadcast_object({"path": f"from rank {ctx.rank}"})
    torch.save(result, out / f"rank{ctx.rank}.pt")
    if ctx.is_global_zero:
        save_reference(out, ctx.world_size)
    ctx.barrier()


def save_reference(out: Path, world_size: int) -> None:
    """Train and evaluate the single-process references; save ``reference.pt``."""
    reference: dict[str, Any] = {
        "initial": make_model(seed=0).state_dict(),
        "initial_regressor": make_regressor(seed=0).state_dict(),
    }
    for n in SIZES:
        model = train_reference(n, world_size)
        reference[f"weights_{n}"] = model.state_dict()
        reference[f"regressor_{n}"] = train_reference_regressor(n, world_size).state_dict()
        for v in VAL_SIZES:
            reference[f"val_{n}_{v}"] = val_sums(model, torch.arange(v), v)
    torch.save(reference, out / "reference.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
