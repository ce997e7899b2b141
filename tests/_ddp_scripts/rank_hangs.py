"""Rank 1 hangs without raising; rank 0 waits in a barrier (run under torchrun).

The process group's timeout (2 s here) makes rank 0's barrier raise; torchrun then stops the
hung rank 1 and the job exits non-zero, long before rank 1's sleep ends.
"""

from __future__ import annotations

import time

from rnnkit.distributed import DistributedContext

TIMEOUT_S = 2.0
HANG_S = 300.0


def main() -> None:
    ctx = DistributedContext("ddp", device="cpu", timeout=TIMEOUT_S).setup()
    ctx.barrier()  # both ranks are up
    if ctx.rank == 1:
        time.sleep(HANG_S)  # stuck, e.g. on a dead network file system
    ctx.barrier()
    print("rank", ctx.rank, "passed the barrier: the timeout did not fire")


if __name__ == "__main__":
    main()
