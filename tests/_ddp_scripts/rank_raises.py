"""Rank 1 raises in the middle of DDP training; rank 0 keeps training (run under torchrun).

Rank 0 then waits in DDP's gradient all-reduce for a rank that is gone. The job must end with
rank 1's error, long before the process-group timeout (set high here, 300 s).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from _ddp_common import PER_RANK_BATCH, make_data, make_model
from torch.distributed.elastic.multiprocessing.errors import record

from rnnkit.distributed import DistributedContext

FAIL_AT_STEP = 3


@record  # puts this rank's traceback into torchrun's failure summary
def main() -> None:
    ctx = DistributedContext("ddp", device="cpu", timeout=300).setup()
    model = make_model(seed=0)
    wrapped = ctx.wrap_model(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = make_data(64, seed=0)
    for step in range(10_000):
        if ctx.rank == 1 and step == FAIL_AT_STEP:
            raise RuntimeError(f"rank 1 failed on purpose at step {step}")
        idx = torch.arange(PER_RANK_BATCH) + PER_RANK_BATCH * ctx.rank
        loss = F.cross_entropy(wrapped(x[idx]), y[idx])
        optimizer.zero_grad()
        torch.autograd.backward(loss)
        optimizer.step()
    print("rank", ctx.rank, "finished: the failure did not stop it")


if __name__ == "__main__":
    main()
