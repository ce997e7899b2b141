"""Data-parallel training on several processes and machines: ``torch.distributed`` + DDP.

rnnkit does not launch processes itself: ``torchrun`` starts one process per device and sets
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; each process
builds a :class:`DistributedContext`, which joins the process group (``init_method="env://"``,
backend ``nccl`` on CUDA and ``gloo`` on CPU, device ``cuda:LOCAL_RANK``) and wraps the model
in :class:`torch.nn.parallel.DistributedDataParallel`. Outside ``torchrun`` everything here
degrades to a single process: the collectives return their input, ``is_global_zero`` is True.

Batches. ``batch_size`` is per rank; the global batch is ``batch_size × world_size``. Every
epoch, all ranks hold the same permutation; global batch ``b`` is
``permutation[b·B_g : (b+1)·B_g]`` (as a single process with batch ``B_g`` would draw it) and
rank ``r``'s batch ``b`` is its ``r``-th contiguous part, so concatenating the ranks' batch
``b`` gives the global batch back. Every rank runs the same number of steps (DDP needs every
rank to call ``backward`` equally often, or the others hang). A short last global batch of
``m`` samples is split as evenly as possible (``torch.tensor_split``); when ``m <
world_size``, the ranks left without a sample get one *filler* sample with loss weight 0.
Each :class:`Shard` carries a ``weight = world_size · n_rank / m``: multiplying the rank's
mean loss by it makes DDP's gradient average equal the single-process mean over the global
batch exactly, uneven last batch included (the weight is 1.0 for every full batch).

How :class:`rnnkit.Trainer` uses it (``Trainer(strategy=...)`` builds the context, whose
``device`` becomes the Trainer's):

- ``fit`` and ``evaluate`` join the group (:meth:`DistributedContext.setup`) on every
  process, after checking that the data are indexed (a DataLoader is refused);
- rank 0's seed (:meth:`~DistributedContext.shared_seed`) seeds the data order: every process
  draws the same permutation; rank 0 picks the checkpoint to resume from, every process reads
  it; then the model is wrapped (:meth:`~DistributedContext.wrap_model`; the optimizer holds
  the bare model's parameters, which DDP shares);
- each epoch a process trains on its :meth:`~DistributedContext.shard` of the permutation
  through the wrapper, its mean loss weighted by :meth:`~DistributedContext.loss_weight` of
  its sample (or valid-step) count, 0 for a filler; validation runs
  :meth:`~DistributedContext.eval_indices` on the bare model;
- the epoch's ``(sum, count)`` pairs are added over the processes
  (:meth:`~DistributedContext.all_reduce_named_sums`) before dividing: every process reports
  the single-process figures;
- ``should_stop`` and ``on_nan="skip"`` are decided together
  (:meth:`~DistributedContext.any_rank`); ``fit`` ends with a
  :meth:`~DistributedContext.barrier`;
- rank 0 alone writes checkpoints (the bare model's weights, no ``module.`` prefix), prints
  and draws the progress bar;
- a checkpoint records the world size, and resuming in the middle of an epoch needs the same
  one (the position counts global batches). The saved partial sums of that epoch are rank
  0's share, kept by rank 0 only: the resumed epoch's *training* metrics count the batches
  before the stop from rank 0 alone (the weights and all else continue exactly).

The teardown (``destroy_process_group``) runs at interpreter exit or on
:meth:`DistributedContext.teardown`.

Failures. A rank that raises exits non-zero; ``torchrun`` then stops the other workers
(SIGTERM) and exits non-zero itself, printing the failed rank; with gloo the peers also see
"Connection closed by peer" at once. A rank that hangs without raising is caught by the
process-group timeout (``timeout``, default :data:`DEFAULT_TIMEOUT_S` seconds): the others'
next collective raises and ``torchrun`` takes the job down. ``torchrun --max-restarts K``
restarts the whole group after a failure; with ``fit(..., resume_from="last")`` it continues
from the last checkpoint. (torch 2.14's ``torchrun`` keeps its store across restarts, so a
restarted group meeting through plain ``env://`` finds the dead attempt's addresses; after a
restart :meth:`DistributedContext.setup` prefixes the keys with the restart count.)

This layer may import ``rnnkit.models`` and the layers below it; never the tasks, the
callbacks or the Trainer.
"""

from __future__ import annotations

import atexit
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar, cast, get_args

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch._C._distributed_c10d import PrefixStore, Store, TCPStore  # = torch.distributed.*

from rnnkit.distributed._collectives import (
    all_gather_object,
    all_reduce_named_sums,
    all_reduce_sums,
    any_rank,
    barrier,
    broadcast_object,
    get_rank,
    get_world_size,
    is_global_zero,
    is_initialized,
    loss_weight,
    rank_zero_print,
)
from rnnkit.distributed._devices import select_device
from rnnkit.distributed._sharding import Shard, eval_indices, num_global_batches, shard_indices
from rnnkit.distributed._wrapping import RoutingDDP, run_method, unwrap_model

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DistributedContext",
    "LaunchEnv",
    "Shard",
    "Strategy",
    "all_gather_object",
    "all_reduce_named_sums",
    "all_reduce_sums",
    "any_rank",
    "barrier",
    "broadcast_object",
    "eval_indices",
    "get_rank",
    "get_world_size",
    "is_global_zero",
    "is_initialized",
    "loss_weight",
    "num_global_batches",
    "rank_zero_print",
    "resolve_strategy",
    "run_method",
    "shard_indices",
    "unwrap_model",
]

Strategy = Literal["auto", "ddp", "single"]
"""The ``strategy`` names, ``"auto"`` (DDP when ``WORLD_SIZE > 1``), ``"ddp"`` and ``"single"``."""

DEFAULT_TIMEOUT_S = 300.0
"""The default process-group timeout, in seconds (how long a collective waits for a rank)."""

_T = TypeVar("_T")
_LAUNCH_HINT = "Hint: launch with `torchrun --nproc-per-node 2 your_script.py`."


@dataclass(frozen=True)
class LaunchEnv:
    """What ``torchrun`` told this process, read from the environment.

    Attributes:
        rank: Global rank, 0 to ``world_size - 1`` (``RANK``).
        local_rank: Rank on this machine; selects the GPU (``LOCAL_RANK``).
        world_size: Number of processes in the job (``WORLD_SIZE``).
        local_world_size: Processes on this machine (``LOCAL_WORLD_SIZE``).
        master_addr: Rendezvous host of the process group (``MASTER_ADDR``).
        master_port: Rendezvous port (``MASTER_PORT``).
        restart_count: How often ``torchrun`` restarted the group (``TORCHELASTIC_RESTART_COUNT``).
        agent_store: ``torchrun``'s agent serves the store at ``MASTER_ADDR:MASTER_PORT``
            (``TORCHELASTIC_USE_AGENT_STORE``).
        launched: True when ``RANK`` and ``WORLD_SIZE`` are set, i.e. a launcher started us.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    master_addr: str | None = None
    master_port: int | None = None
    restart_count: int = 0
    agent_store: bool = False
    launched: bool = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> LaunchEnv:
        """Read the launch variables from ``environ`` (default ``os.environ``)."""
        env = os.environ if environ is None else environ
        world_size = _env_int(env, "WORLD_SIZE", 1)
        rank = _env_int(env, "RANK", 0)
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"Expected 0 <= RANK < WORLD_SIZE in the environment, but got RANK={rank}, "
                f"WORLD_SIZE={world_size}. {_LAUNCH_HINT}"
            )
        port = env.get("MASTER_PORT")
        return cls(
            rank=rank,
            local_rank=_env_int(env, "LOCAL_RANK", 0),
            world_size=world_size,
            local_world_size=_env_int(env, "LOCAL_WORLD_SIZE", 1),
            master_addr=env.get("MASTER_ADDR"),
            master_port=None if port is None else _env_int(env, "MASTER_PORT", 0),
            restart_count=_env_int(env, "TORCHELASTIC_RESTART_COUNT", 0),
            agent_store=env.get("TORCHELASTIC_USE_AGENT_STORE") == "True",
            launched="RANK" in env and "WORLD_SIZE" in env,
        )


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    """Parse one integer environment variable, naming it when it is not an integer."""
    value = env.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"Expected the environment variable {name} to be an integer, but got {value!r}. "
            f"{_LAUNCH_HINT}"
        ) from None


def resolve_strategy(strategy: str, env: LaunchEnv | None = None) -> Literal["ddp", "single"]:
    """Turn a ``strategy`` name into what this process will run.

    Args:
        strategy: ``"auto"`` (DDP when launched with ``WORLD_SIZE > 1``, else one process),
            ``"ddp"`` (requires a launcher's environment; ``WORLD_SIZE = 1`` is allowed) or
            ``"single"``.
        env: The launch environment; read from ``os.environ`` when None.

    Returns:
        ``"ddp"`` or ``"single"``.

    Raises:
        ValueError: An unknown name, ``"ddp"`` without ``torchrun``'s variables, or
            ``"single"`` inside a multi-process launch (every process would train alone).
    """
    env = LaunchEnv.from_environ() if env is None else env
    if strategy not in get_args(Strategy):
        raise ValueError(
            f"Expected `strategy` to be one of {get_args(Strategy)}, but got {strategy!r}."
        )
    if strategy == "auto":
        return "ddp" if env.world_size > 1 else "single"
    if strategy == "ddp" and not (env.launched and env.master_addr and env.master_port):
        raise ValueError(
            "Expected `strategy='ddp'` to run under torchrun (RANK, WORLD_SIZE, MASTER_ADDR and "
            f"MASTER_PORT set), but they are missing. {_LAUNCH_HINT} Or use strategy='auto', "
            "which falls back to one process."
        )
    if strategy == "single" and env.world_size > 1:
        raise ValueError(
            f"Expected `strategy='single'` in a single process, but WORLD_SIZE={env.world_size}: "
            "every process would train the same model alone and all would write checkpoints. "
            "Hint: use strategy='auto' or 'ddp', or launch with plain `python`."
        )
    return cast("Literal['ddp', 'single']", strategy)


class DistributedContext:
    """One process's view of a data-parallel job: strategy, rank, device and process group.

    Building it reads the environment and resolves the device; :meth:`setup` joins the
    process group. With the ``"single"`` strategy every method works and does nothing
    distributed (even when some process group exists).

    Args:
        strategy: ``"auto"``, ``"ddp"`` or ``"single"`` (see :func:`resolve_strategy`).
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or a
            :class:`torch.device`. Under DDP on GPUs each rank takes ``cuda:LOCAL_RANK``.
        timeout: Seconds a collective waits for a silent rank before raising (the process
            group's timeout). It must exceed the longest time one rank works alone, e.g.
            rank 0 writing a checkpoint while the others wait.
        backend: ``"nccl"`` or ``"gloo"``; None picks nccl on CUDA and gloo on CPU.
        env: The launch environment; read from ``os.environ`` when None.

    Attributes:
        env: The launch environment (:class:`LaunchEnv`).
        strategy: ``"ddp"`` or ``"single"``, resolved from the ``strategy`` argument.
        device: This rank's device, a :class:`torch.device`.
        backend: The process-group backend, ``"nccl"`` or ``"gloo"``.
        timeout: The process-group timeout in seconds.

    Raises:
        ValueError: An unknown strategy, DDP without ``torchrun``, a bad device or timeout.
    """

    def __init__(
        self,
        strategy: str = "auto",
        *,
        device: str | torch.device = "auto",
        timeout: float = DEFAULT_TIMEOUT_S,
        backend: str | None = None,
        env: LaunchEnv | None = None,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"Expected `timeout` > 0 seconds, but got {timeout}.")
        self.env = LaunchEnv.from_environ() if env is None else env
        self.strategy = resolve_strategy(strategy, self.env)
        self.device = select_device(device, self.strategy, self.env)
        self.backend = backend or ("nccl" if self.device.type == "cuda" else "gloo")
        self.timeout = timeout
        self._owns_group = False

    @classmethod
    def from_strategy(cls, strategy: str | DistributedContext, **kwargs: Any) -> DistributedContext:
        """Return ``strategy`` itself when it is a context, else build one with ``kwargs``."""
        if isinstance(strategy, DistributedContext):
            return strategy
        return cls(strategy, **kwargs)

    def __repr__(self) -> str:
        return (
            f"DistributedContext(strategy={self.strategy!r}, rank={self.rank}, "
            f"world_size={self.world_size}, device={str(self.device)!r}, backend={self.backend!r})"
        )

    @property
    def is_distributed(self) -> bool:
        """True under DDP (even with ``WORLD_SIZE = 1``)."""
        return self.strategy == "ddp"

    @property
    def rank(self) -> int:
        """Global rank (0 in a single process)."""
        return self.env.rank if self.is_distributed else 0

    @property
    def local_rank(self) -> int:
        """Rank on this machine (0 in a single process)."""
        return self.env.local_rank if self.is_distributed else 0

    @property
    def world_size(self) -> int:
        """Number of processes (1 in a single process)."""
        return self.env.world_size if self.is_distributed else 1

    @property
    def is_global_zero(self) -> bool:
        """True on rank 0 and in a single process (the rank that writes files and prints)."""
        return self.rank == 0

    def setup(self) -> DistributedContext:
        """Join the process group (``init_method="env://"``); idempotent; returns ``self``.

        A group that already exists (made by this or another context, or by the user) is
        reused. A group made here is destroyed by :meth:`teardown`, at the latest at exit.
        After a ``torchrun --max-restarts`` restart the group meets in a fresh key space of
        ``torchrun``'s store (its keys prefixed with the restart count).
        """
        if not self.is_distributed or is_initialized():
            return self
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.set_device(self.device)
        options: dict[str, Any] = {"init_method": "env://"}
        store = self._restart_store()
        if store is not None:
            options = {"store": store, "rank": self.env.rank, "world_size": self.env.world_size}
        dist.init_process_group(
            self.backend,
            timeout=timedelta(seconds=self.timeout),
            device_id=self.device if cuda else None,
            **options,
        )
        self._owns_group = True
        atexit.register(self.teardown)
        return self

    def _restart_store(self) -> Store | None:
        """A per-attempt view of ``torchrun``'s store after a restart; None otherwise.

        ``torchrun`` (torch 2.14) keeps one store across restarts, so ``env://`` would meet the
        previous attempt's addresses and fail ("Connection refused"). Prefixing the keys with
        the restart count, the same on every rank of a restarted group, avoids them.
        """
        env = self.env
        if env.restart_count == 0 or not env.agent_store or env.master_addr is None:
            return None
        client = TCPStore(
            env.master_addr,
            env.master_port or 0,
            env.world_size,
            is_master=False,
            timeout=timedelta(seconds=self.timeout),
        )
        return PrefixStore(f"rnnkit/restart_{env.restart_count}/", client)

    def teardown(self) -> None:
        """Destroy the process group if :meth:`setup` created it (safe to call twice)."""
        if self._owns_group and is_initialized():
            dist.destroy_process_group()
        self._owns_group = False

    def __enter__(self) -> DistributedContext:
        return self.setup()

    def __exit__(self, *exc_info: object) -> None:
        self.teardown()

    def wrap_model(self, model: nn.Module, *, find_unused_parameters: bool = False) -> nn.Module:
        """Wrap ``model`` (already on :attr:`device`) for training; ``model`` itself if single.

        Under DDP the wrapper averages gradients over ranks during ``backward``, and its
        construction copies rank 0's parameters to every rank. The bare model's attributes
        are readable on the wrapper (``wrapped.batch_first``), and its methods run through
        DDP's forward (``wrapped.rollout(...)``, like :func:`run_method`), so the gradients
        of any training call are averaged. Save and evaluate :func:`unwrap_model`'s result.

        Args:
            model: The bare model, on :attr:`device`.
            find_unused_parameters: Passed to DDP: set it when a training forward leaves some
                parameters without a gradient (DDP otherwise stops with an error).

        Returns:
            A :class:`torch.nn.parallel.DistributedDataParallel` (around a small router
            module), or ``model`` itself in a single process.
        """
        if not self.is_distributed:
            return model
        self.setup()
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return RoutingDDP(
            model,
            device_ids=device_ids,
            find_unused_parameters=find_unused_parameters,
        )

    def shard(self, permutation: Tensor, batch_size: int, drop_last: bool = False) -> list[Shard]:
        """This rank's batches of an epoch: :func:`shard_indices` with this rank and size.

        Shapes:
            permutation: ``(n,)``, int64, the same on every rank.
        """
        return shard_indices(permutation, self.rank, self.world_size, batch_size, drop_last)

    def eval_indices(self, n: int) -> Tensor:
        """This rank's part of ``range(n)`` for evaluation (:func:`eval_indices`).

        Shapes:
            returns: ``(n_rank,)``, int64.
        """
        return eval_indices(n, self.rank, self.world_size)

    def shared_seed(self, seed: int | None) -> int:
        """Rank 0's ``seed`` on every rank; a fresh random one (rank 0's) when None."""
        if seed is None:
            seed = random.SystemRandom().randrange(2**63)
        return broadcast_object(seed) if self.is_distributed else seed

    def all_reduce_sums(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        """Sums over ranks (:func:`all_reduce_sums`).

        Shapes:
            tensors[i]: any shape ``S_i``; returns[i]: ``S_i``.
        """
        if not self.is_distributed:
            return [t.detach().clone() for t in tensors]
        return all_reduce_sums(tensors)

    def all_reduce_named_sums(
        self, parts: Mapping[str, tuple[float, float]]
    ) -> dict[str, tuple[float, float]]:
        """Named ``(sum, count)`` pairs summed over ranks (:func:`all_reduce_named_sums`)."""
        if not self.is_distributed:
            return {name: (float(total), float(count)) for name, (total, count) in parts.items()}
        return all_reduce_named_sums(parts)

    def loss_weight(self, count: Tensor | float) -> Tensor:
        """The factor for this rank's mean loss over ``count`` units (:func:`loss_weight`).

        Shapes:
            count: ``()``; returns: ``()``.
        """
        return loss_weight(count) if self.is_distributed else torch.ones(())

    def any_rank(self, flag: bool) -> bool:
        """True everywhere when ``flag`` is True on some rank (:func:`any_rank`)."""
        return any_rank(flag) if self.is_distributed else flag

    def barrier(self) -> None:
        """Wait for every rank (:func:`barrier`)."""
        if self.is_distributed:
            barrier()

    def broadcast_object(self, obj: _T, src: int = 0) -> _T:
        """Rank ``src``'s ``obj`` on every rank (:func:`broadcast_object`)."""
        return broadcast_object(obj, src) if self.is_distributed else obj

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on rank 0 only."""
        if self.is_global_zero:
            print(*args, **kwargs)
