"""Unit tests of rnnkit.distributed that run in the pytest process (no torchrun).

The multi-process behaviour (DDP on 2 ranks against one process, failures, timeouts) is in
tests/test_distributed_launch.py.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator
from typing import cast

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from rnnkit.distributed import (
    DEFAULT_TIMEOUT_S,
    DistributedContext,
    LaunchEnv,
    Shard,
    all_reduce_named_sums,
    all_reduce_sums,
    any_rank,
    barrier,
    broadcast_object,
    eval_indices,
    is_global_zero,
    loss_weight,
    num_global_batches,
    rank_zero_print,
    resolve_strategy,
    run_method,
    shard_indices,
    unwrap_model,
)

TORCHRUN_ENV = {
    "RANK": "1",
    "LOCAL_RANK": "1",
    "WORLD_SIZE": "4",
    "LOCAL_WORLD_SIZE": "2",
    "MASTER_ADDR": "10.0.0.7",
    "MASTER_PORT": "29500",
    "TORCHELASTIC_RESTART_COUNT": "2",
    "TORCHELASTIC_USE_AGENT_STORE": "True",
}


def launched(world_size: int, rank: int = 0, local_world_size: int = 1) -> LaunchEnv:
    return LaunchEnv(
        rank=rank,
        local_rank=rank % local_world_size,
        world_size=world_size,
        local_world_size=local_world_size,
        master_addr="127.0.0.1",
        master_port=29500,
        launched=True,
    )


# --- the launch environment and the strategy -------------------------------------------------


def test_launch_env_reads_torchrun_variables() -> None:
    env = LaunchEnv.from_environ(TORCHRUN_ENV)
    assert env == LaunchEnv(1, 1, 4, 2, "10.0.0.7", 29500, 2, agent_store=True, launched=True)


def test_launch_env_defaults_to_one_process() -> None:
    assert LaunchEnv.from_environ({}) == LaunchEnv()
    assert not LaunchEnv.from_environ({}).launched


def test_launch_env_names_a_bad_variable() -> None:
    with pytest.raises(ValueError, match="WORLD_SIZE to be an integer, but got 'two'"):
        LaunchEnv.from_environ({"RANK": "0", "WORLD_SIZE": "two"})
    with pytest.raises(ValueError, match="RANK=4, WORLD_SIZE=4"):
        LaunchEnv.from_environ({**TORCHRUN_ENV, "RANK": "4"})


@pytest.mark.parametrize(
    ("strategy", "env", "expected"),
    [
        ("auto", LaunchEnv(), "single"),
        ("auto", launched(2), "ddp"),
        ("auto", launched(1), "single"),
        ("ddp", launched(1), "ddp"),
        ("ddp", launched(2, rank=1), "ddp"),
        ("single", LaunchEnv(), "single"),
        ("single", launched(1), "single"),
    ],
)
def test_resolve_strategy(strategy: str, env: LaunchEnv, expected: str) -> None:
    assert resolve_strategy(strategy, env) == expected


def test_resolve_strategy_rejects_bad_combinations() -> None:
    with pytest.raises(ValueError, match="one of \\('auto', 'ddp', 'single'\\), but got 'dp'"):
        resolve_strategy("dp", LaunchEnv())
    with pytest.raises(ValueError, match="torchrun --nproc-per-node"):
        resolve_strategy("ddp", LaunchEnv())
    with pytest.raises(ValueError, match="WORLD_SIZE=2: every process would train"):
        resolve_strategy("single", launched(2))


def test_context_rejects_bad_device_and_timeout() -> None:
    with pytest.raises(ValueError, match="every rank would use the same GPU"):
        DistributedContext("ddp", device="cuda:1", env=launched(2, local_world_size=2))
    if torch.cuda.device_count() < 2:
        with pytest.raises(ValueError, match="GPU for LOCAL_RANK=1"):
            DistributedContext("ddp", device="cuda", env=launched(2, 1, local_world_size=2))
    with pytest.raises(ValueError, match="`timeout` > 0 seconds, but got 0"):
        DistributedContext("single", timeout=0)


# --- sharding the epoch ------------------------------------------------------------------------


def check_shards(n: int, batch_size: int, world_size: int, drop_last: bool) -> None:
    """Every property of the sharding, against a single process's torch.split batches."""
    torch.manual_seed(n)
    perm = torch.randperm(n)
    per_rank = [
        shard_indices(perm, r, world_size, batch_size, drop_last) for r in range(world_size)
    ]
    single = list(torch.split(perm, batch_size * world_size))
    if drop_last and single and len(single[-1]) < batch_size * world_size:
        single = single[:-1]
    assert [len(s) for s in per_rank] == [len(single)] * world_size  # same steps on all ranks
    for b, global_batch in enumerate(single):
        shards = [per_rank[r][b] for r in range(world_size)]
        check_one_global_batch(global_batch, shards, world_size)


def check_one_global_batch(global_batch: Tensor, shards: list[Shard], world_size: int) -> None:
    real = [s for s in shards if not s.is_filler]
    torch.testing.assert_close(torch.cat([s.indices for s in real]), global_batch, rtol=0, atol=0)
    assert all(s.indices.numel() >= 1 for s in shards)  # every rank can run forward/backward
    assert all(s.global_size == len(global_batch) for s in shards)
    assert math.isclose(sum(s.weight for s in shards), world_size)
    sizes = [s.indices.numel() for s in real]
    assert max(sizes) - min(sizes) <= 1  # as even as possible
    assert len(real) == min(world_size, len(global_batch))
    for s in shards:
        share = s.indices.numel() / len(global_batch)
        assert s.weight == pytest.approx(0.0 if s.is_filler else world_size * share)


@pytest.mark.parametrize(
    ("n", "batch_size", "world_size", "drop_last"),
    [(32, 4, 2, False), (37, 4, 2, False), (33, 4, 2, False), (33, 4, 2, True), (3, 4, 4, False)],
)
def test_shard_indices_cover_the_single_process_batches(
    n: int, batch_size: int, world_size: int, drop_last: bool
) -> None:
    check_shards(n, batch_size, world_size, drop_last)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 90),
    batch_size=st.integers(1, 9),
    world_size=st.integers(1, 5),
    drop_last=st.booleans(),
)
def test_shard_indices_property(n: int, batch_size: int, world_size: int, drop_last: bool) -> None:
    check_shards(n, batch_size, world_size, drop_last)


def test_full_batches_have_weight_one_and_a_tiny_last_batch_gets_fillers() -> None:
    perm = torch.arange(17)  # 2 full global batches of 8, then 1 sample for 2 ranks
    rank0, rank1 = (shard_indices(perm, r, 2, 4) for r in (0, 1))
    assert [s.weight for s in rank0] == [1.0, 1.0, 2.0]
    assert [s.weight for s in rank1] == [1.0, 1.0, 0.0]
    assert rank1[-1].is_filler
    assert rank1[-1].indices.tolist() == [16]  # a real sample stands in, weight 0
    assert rank0[0].indices.tolist() == [0, 1, 2, 3]
    assert rank1[0].indices.tolist() == [4, 5, 6, 7]


def test_num_global_batches() -> None:
    assert num_global_batches(37, 4, 2) == 5
    assert num_global_batches(37, 4, 2, drop_last=True) == 4
    assert num_global_batches(32, 4, 2, drop_last=True) == 4


def test_shard_indices_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="shape \\(n,\\), but got \\(2, 3\\)"):
        shard_indices(torch.zeros(2, 3, dtype=torch.int64), 0, 1, 4)
    with pytest.raises(ValueError, match="`batch_size` >= 1, but got 0"):
        shard_indices(torch.arange(4), 0, 1, 0)
    with pytest.raises(ValueError, match="rank=2, world_size=2"):
        shard_indices(torch.arange(4), 2, 2, 1)


@pytest.mark.parametrize(("n", "world_size"), [(13, 2), (12, 3), (2, 4), (0, 2)])
def test_eval_indices_partition_without_padding(n: int, world_size: int) -> None:
    parts = [eval_indices(n, r, world_size) for r in range(world_size)]
    assert torch.cat(parts).tolist() == list(range(n))
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1


# --- the loss weights make DDP's gradient average equal the single-process gradient -----------


def averaged_rank_gradients(
    model: nn.Module, x: Tensor, y: Tensor, shards: list[Shard], use_weight: bool
) -> list[Tensor]:
    """What DDP computes: each rank's gradient of (mean loss x weight), averaged over ranks."""
    total = [torch.zeros_like(p) for p in model.parameters()]
    for shard in shards:
        loss = F.cross_entropy(model(x[shard.indices]), y[shard.indices])
        weight = shard.weight if use_weight else 1.0
        grads = torch.autograd.grad(loss * weight, list(model.parameters()))
        total = [t + g / len(shards) for t, g in zip(total, grads, strict=True)]
    return total


@pytest.mark.parametrize("n", [8, 5, 7, 1])  # full, uneven 3+2, uneven 2+2+2+1, fillers
def test_weighted_rank_gradients_average_to_the_global_batch_gradient(n: int) -> None:
    torch.manual_seed(0)
    world_size = 4 if n == 7 else 2
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3))
    x, y = torch.randn(n, 3), torch.randint(0, 3, (n,))
    perm = torch.randperm(n)
    shards = [shard_indices(perm, r, world_size, 8 // world_size)[0] for r in range(world_size)]
    loss = F.cross_entropy(model(x[perm]), y[perm])  # one process, the whole global batch
    expected = torch.autograd.grad(loss, list(model.parameters()))
    got = averaged_rank_gradients(model, x, y, shards, use_weight=True)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)
    unweighted = averaged_rank_gradients(model, x, y, shards, use_weight=False)
    same = all(torch.allclose(g, e) for g, e in zip(unweighted, expected, strict=True))
    if n in (5, 7):  # uneven parts: without the weights the gradients differ
        assert not same


# --- collectives and the context in a single process ------------------------------------------


def test_collectives_are_identities_in_a_single_process(capsys: pytest.CaptureFixture[str]) -> None:
    pair = [torch.tensor(3.5), torch.tensor([2, 5])]
    out = all_reduce_sums(pair)
    assert out[0] is not pair[0]
    torch.testing.assert_close(out, pair, rtol=0, atol=0)
    assert any_rank(True)
    assert not any_rank(False)
    assert broadcast_object({"a": 1}) == {"a": 1}
    assert all_reduce_named_sums({"loss": (3.0, 2.0)}) == {"loss": (3.0, 2.0)}
    assert loss_weight(7).item() == 1.0
    barrier()
    assert is_global_zero()
    rank_zero_print("hello", 3)
    assert capsys.readouterr().out == "hello 3\n"


def test_single_context_changes_nothing() -> None:
    ctx = DistributedContext("auto", device="cpu", env=LaunchEnv())
    model = nn.Linear(2, 2)
    with ctx:
        assert not dist.is_initialized()
        assert ctx.wrap_model(model) is model
    assert (ctx.rank, ctx.world_size, ctx.is_global_zero) == (0, 1, True)
    assert ctx.device == torch.device("cpu")
    assert ctx.backend == "gloo"
    assert ctx.shared_seed(7) == 7
    assert isinstance(ctx.shared_seed(None), int)
    perm = torch.randperm(10)
    shards = ctx.shard(perm, 4)
    assert [s.indices.tolist() for s in shards] == [b.tolist() for b in torch.split(perm, 4)]
    assert [s.weight for s in shards] == [1.0, 1.0, 1.0]
    assert DistributedContext.from_strategy(ctx) is ctx
    assert ctx.timeout == DEFAULT_TIMEOUT_S


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def one_rank_group(monkeypatch: pytest.MonkeyPatch) -> Iterator[DistributedContext]:
    """A real gloo process group of one rank, made by the context from torchrun's variables."""
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"}
    env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ctx = DistributedContext("ddp", device="cpu", timeout=30)
    try:
        yield ctx.setup()
    finally:
        ctx.teardown()


class TwoMethods(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.batch_first = False

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.lin(x)
        return out

    def doubled(self, x: Tensor, *, scale: float) -> Tensor:
        return scale * self.forward(x)


def test_one_rank_group_wraps_in_ddp_and_tears_down(one_rank_group: DistributedContext) -> None:
    ctx = one_rank_group
    assert dist.is_initialized()
    assert dist.get_backend() == "gloo"
    assert ctx.is_distributed
    assert ctx.setup() is ctx  # idempotent
    torch.manual_seed(0)
    model = TwoMethods()
    wrapped = ctx.wrap_model(model)
    assert isinstance(wrapped, DistributedDataParallel)
    assert unwrap_model(wrapped) is model
    x = torch.randn(4, 3)
    torch.testing.assert_close(wrapped(x), model(x))
    torch.testing.assert_close(run_method(wrapped, "doubled", x, scale=2.0), 2 * model(x))
    torch.testing.assert_close(run_method(model, "doubled", x, scale=2.0), 2 * model(x))
    routed = cast("TwoMethods", wrapped)  # the wrapper reads like the bare model
    assert routed.batch_first is False
    torch.testing.assert_close(routed.doubled(x, scale=2.0), 2 * model(x))
    assert getattr(wrapped, "no_such_name", 7) == 7
    sums = ctx.all_reduce_sums([torch.tensor([1.5, 2.0]), torch.tensor(7)])
    expected = [torch.tensor([1.5, 2.0]), torch.tensor(7)]
    torch.testing.assert_close(sums, expected, rtol=0, atol=0)
    assert ctx.any_rank(True)
    assert ctx.broadcast_object("x") == "x"
    assert ctx.loss_weight(5).item() == 1.0  # one rank: its count is the global count
    assert ctx.loss_weight(torch.tensor(0)).item() == 0.0  # a filler
    assert ctx.all_reduce_named_sums({"a": (1.0, 2.0)}) == {"a": (1.0, 2.0)}
    ctx.barrier()
    ctx.teardown()
    assert not dist.is_initialized()
