"""Random-number-generator states as plain values, for checkpoints loaded with ``weights_only``.

:func:`capture_rng` returns the Python, NumPy, torch (and CUDA) global generator states as
tensors, lists and numbers only; :func:`restore_rng` puts them back. :func:`seed_everything`
seeds the three global generators at once.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["capture_rng", "restore_rng", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's :mod:`random`, NumPy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the global generator is what users seed
    torch.manual_seed(seed)


def _python_state() -> list[Any]:
    version, internal, gauss_next = random.getstate()
    return [version, torch.tensor(internal, dtype=torch.int64), gauss_next]


def _numpy_state() -> dict[str, Any]:
    key, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # noqa: NPY002
    return {
        "key": str(key),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def capture_rng() -> dict[str, Any]:
    """The global generators' states, as tensors, lists, dicts and numbers.

    Returns:
        A dict with keys ``"python"``, ``"numpy"``, ``"torch"`` and, when CUDA is initialised,
        ``"cuda"`` (one state tensor per device).
    """
    state: dict[str, Any] = {
        "python": _python_state(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Restore the states :func:`capture_rng` returned (CUDA only when present on both sides)."""
    version, internal, gauss_next = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal.tolist()), gauss_next))
    np_state = state["numpy"]
    keys = np_state["keys"].numpy().astype(np.uint32)
    np.random.set_state(  # noqa: NPY002
        (np_state["key"], keys, np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [s.cpu() for s in state["cuda"]][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda_states)
