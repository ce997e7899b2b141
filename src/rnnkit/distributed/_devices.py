"""Which device this process trains on (private): ``device=`` resolved for its rank."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch

if TYPE_CHECKING:
    from rnnkit.distributed import LaunchEnv

__all__ = ["select_device"]


def _as_device(device: str | torch.device) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"Expected `device` to be 'auto', 'cpu', 'cuda', 'cuda:i' or a torch.device, but "
            f"got {device!r}. Hint: 'auto' takes CUDA when it is available, else the CPU."
        ) from None


def select_device(device: str | torch.device, strategy: str, env: LaunchEnv) -> torch.device:
    """Resolve ``device`` for this rank: ``cuda:LOCAL_RANK`` under DDP on GPUs."""
    if isinstance(device, str) and device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = _as_device(device)
    if strategy != "ddp" or dev.type != "cuda":
        return dev
    given = cast("int | None", dev.index)  # torch's stubs say int; "cuda" has index None
    if given is not None and env.local_world_size > 1:
        raise ValueError(
            f"Expected `device` 'cuda' or 'auto' under DDP with {env.local_world_size} processes "
            f"on this machine, but got {str(dev)!r}: every rank would use the same GPU. Hint: "
            "pass device='cuda'; each rank then takes cuda:LOCAL_RANK."
        )
    count = torch.cuda.device_count()
    index = given if given is not None else (0 if count == 1 else env.local_rank)
    if index >= count:
        raise ValueError(
            f"Expected a GPU for LOCAL_RANK={env.local_rank}, but only {count} are visible. "
            f"Hint: launch with `torchrun --nproc-per-node {count}` (one process per GPU)."
        )
    return torch.device("cuda", index)
