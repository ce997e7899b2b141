"""Rank 1 fails on the first attempt; ``torchrun --max-restarts 1`` restarts the group.

The restarted processes must form a new process group (torch 2.14's torchrun keeps the
previous attempt's addresses in its store) and communicate; each prints what it saw.
"""

from __future__ import annotations

import torch

from rnnkit.distributed import DistributedContext


def main() -> None:
    ctx = DistributedContext("ddp", device="cpu", timeout=30).setup()
    attempt = ctx.env.restart_count
    total = ctx.all_reduce_sums([torch.tensor(float(ctx.rank + 1))])[0]
    if attempt == 0 and ctx.rank == 1:
        raise RuntimeError("rank 1 failed on the first attempt")
    seed = ctx.shared_seed(100 + ctx.rank)
    print(f"attempt {attempt} rank {ctx.rank} sum {total.item():g} seed {seed}", flush=True)


if __name__ == "__main__":
    main()
