"""Multi-process tests: scripts in tests/_ddp_scripts run under torchrun on 2 CPU ranks (gloo).

Each test launches ``python -m torch.distributed.run --standalone --nproc-per-node 2`` (what
the ``torchrun`` command runs) in its own process group, with a wall-clock limit after which
the whole group is killed and the test fails: a hang fails the test instead of the suite.
"""

from __future__ import annotations

import os
import re
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

SCRIPTS = Path(__file__).resolve().parent / "_ddp_scripts"
LIMIT_S = 240.0  # far above a normal launch (~10 s), far below a hang
QUICK_S = 100.0
"""A launch that waits for no timeout ends well within this even on a loaded 2-core machine
(about 10 s alone); the 300 s waits the tests rule out would take far longer."""
TORCH_ABORT = "terminate called without an active exception"
"""How a gloo worker of torch 2.14 has aborted (SIGABRT) now and then, in about one suite run
of ten on a 2-core machine and in none of 40 launches of the same script alone. The Trainer
fixture launches once more when, and only when, it sees this message."""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (dist.is_available() and dist.is_gloo_available()),
        reason="torch.distributed with the gloo backend is not available",
    ),
]


def torchrun(script: str, *args: str, restarts: int = 0) -> tuple[int, str, float]:
    """Run ``script`` under torchrun on 2 ranks; return (exit code, output, seconds)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]
    cmd += ["2", "--max-restarts", str(restarts), str(SCRIPTS / script), *args]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "error"}
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its workers: the group we started
        out, _ = proc.communicate()
        pytest.fail(f"torchrun {script} hung for {LIMIT_S} s:\n{out.decode()[-3000:]}")
    return proc.returncode, out.decode(errors="replace"), time.monotonic() - start


def load(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = torch.load(path, weights_only=True)
    return result


@pytest.fixture(scope="module")
def equivalence_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """One 2-rank launch of equivalence.py; its per-rank results and the reference."""
    out = tmp_path_factory.mktemp("ddp_equivalence")
    code, output, _ = torchrun("equivalence.py", str(out))
    assert code == 0, output[-3000:]
    return {name: load(out / f"{name}.pt") for name in ("rank0", "rank1", "reference")}


@pytest.mark.parametrize("n", [37, 33])  # last global batch 3 + 2, and 1 + a filler
@pytest.mark.parametrize("model", ["weights", "regressor"])
def test_ddp_weights_equal_single_process_on_the_same_global_batches(
    equivalence_run: dict[str, dict[str, Any]], n: int, model: str
) -> None:
    """Classifier: mean loss x shard.weight; regressor: masked MSE x loss_weight(elements)."""
    ref = equivalence_run["reference"][f"{model}_{n}"]
    for rank in ("rank0", "rank1"):
        got = equivalence_run[rank][f"{model}_{n}"]
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    initial = equivalence_run["reference"]["initial" if model == "weights" else "initial_regressor"]
    moved = max((ref[k] - initial[k]).abs().max().item() for k in ref)
    assert moved > 0.05  # training changed the weights: the equality is not trivial


@pytest.mark.parametrize(("n", "val_size"), [(37, 13), (33, 13), (37, 1)])
def test_reduced_validation_equals_single_process(
    equivalence_run: dict[str, dict[str, Any]], n: int, val_size: int
) -> None:
    key = f"val_{n}_{val_size}"
    correct, count, loss_sum = equivalence_run["reference"][key]
    for rank in ("rank0", "rank1"):
        got_correct, got_count, got_loss = equivalence_run[rank][key]
        assert got_count.item() == count.item() == val_size  # no sample twice, none missing
        assert got_count.dtype == torch.int64
        assert got_correct.item() == correct.item()  # the same accuracy, exactly
        torch.testing.assert_close(got_loss, loss_sum)


def test_ranks_take_decisions_together(equivalence_run: dict[str, dict[str, Any]]) -> None:
    for rank in ("rank0", "rank1"):
        result = equivalence_run[rank]
        assert result["any_rank_1"] is True  # rank 1's flag reaches rank 0
        assert result["any_none"] is False
        assert result["seed"] == 1234  # rank 0's seed, though rank 1 passed 1235
        assert result["object"] == {"path": "from rank 0"}
        assert result["named"] == {"loss": (3.0, 4.0), "extra": (5.0, 1.0)}  # names united
        assert result["named_empty"] == {"a": (1.0, 3.0)}  # rank 0 had no part, still joined


def test_a_raising_rank_ends_the_job_with_its_error() -> None:
    code, output, seconds = torchrun("rank_raises.py")
    assert code != 0
    assert "RuntimeError: rank 1 failed on purpose at step 3" in output
    assert "finished: the failure did not stop it" not in output
    assert seconds < QUICK_S  # the process-group timeout (300 s) was not needed


def test_a_hung_rank_is_stopped_by_the_process_group_timeout() -> None:
    code, output, seconds = torchrun("rank_hangs.py")
    assert code != 0
    assert "Timed out" in output  # rank 0's barrier gave up after 2 s
    assert "passed the barrier" not in output
    assert seconds < QUICK_S  # rank 1 would have slept 300 s: torchrun stopped it


def test_torchrun_restart_forms_a_new_group() -> None:
    code, output, _ = torchrun("restart.py", restarts=1)
    assert code == 0, output[-3000:]
    assert "rank 1 failed on the first attempt" in output
    for rank in (0, 1):  # the restarted ranks met and exchanged values
        assert f"attempt 1 rank {rank} sum 3 seed 100" in output


# --- Trainer(strategy="ddp") ----------------------------------------------------------------


@pytest.fixture(scope="module")
def trainer_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A straight 2-rank fit; a 2-rank fit whose rank 1 crashes, resumed by a new 2-rank
    launch; and one process.

    The resume is a second ``torchrun`` launch, as a user would run it, rather than
    ``torchrun --max-restarts``: in torch 2.14 a restarted worker that trains has been seen to
    abort in torch's own teardown ("terminate called without an active exception"), which
    would make this fixture flaky; ``test_torchrun_restart_forms_a_new_group`` covers the
    restart path itself.
    """
    runs: dict[str, Any] = {}
    crash_dir = tmp_path_factory.mktemp("trainer_crash")
    code, crash_output, _ = torchrun("trainer_fit.py", str(crash_dir), "crash")
    assert code != 0, crash_output[-3000:]

    def folder(mode: str) -> Path:  # a fresh one for a straight run; a resume reuses the crash's
        return tmp_path_factory.mktemp("trainer_straight") if mode == "straight" else crash_dir

    for mode in ("straight", "resume"):
        out = folder(mode)
        code, output, _ = torchrun("trainer_fit.py", str(out), mode)
        if code != 0 and TORCH_ABORT in output:  # once more: a fresh folder, or resume again
            out = folder(mode)
            code, output, _ = torchrun("trainer_fit.py", str(out), mode)
        assert code == 0, output[-3000:]
        runs[mode] = {f"rank{r}": load(out / f"rank{r}.pt") for r in (0, 1)}
        files = sorted(p.name for p in (out / "checkpoints").iterdir())
        runs[mode] |= {"output": output, "files": files}
    runs["resume"]["crash_output"] = crash_output
    single_dir = tmp_path_factory.mktemp("trainer_single")
    sys.path.insert(0, str(SCRIPTS))
    try:
        script = runpy.run_path(str(SCRIPTS / "trainer_fit.py"))
        runs["single"] = script["fit_single"](single_dir)
    finally:
        sys.path.remove(str(SCRIPTS))
    runs["single"]["files"] = sorted(p.name for p in (single_dir / "checkpoints").iterdir())
    return runs


def test_trainer_ddp_fit_equals_single_process(trainer_runs: dict[str, Any]) -> None:
    single = trainer_runs["single"]
    for rank in ("rank0", "rank1"):
        run = trainer_runs["straight"][rank]
        torch.testing.assert_close(run["weights"], single["weights"], rtol=1e-5, atol=1e-6)
        for got, expected in zip(run["history"], single["history"], strict=True):
            assert got["val_accuracy"] == expected["val_accuracy"]
            assert got["val_loss"] == pytest.approx(expected["val_loss"], rel=1e-5)
            assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)


def test_trainer_ddp_evaluates_fewer_samples_than_ranks(trainer_runs: dict[str, Any]) -> None:
    """One validation sample on 2 ranks: rank 1 has no batch, and both get rank 0's result."""
    expected = trainer_runs["single"]["one_sample"]
    assert set(expected) == {"loss", "accuracy"}
    for rank in ("rank0", "rank1"):
        got = trainer_runs["straight"][rank]["one_sample"]
        assert got.keys() == expected.keys()
        assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)
        assert got["accuracy"] == expected["accuracy"]


def test_every_rank_logs_rank_0s_gradient_flow_ratio(trainer_runs: dict[str, Any]) -> None:
    histories = [trainer_runs["straight"][rank]["history"] for rank in ("rank0", "rank1")]
    ratios = [[record["grad_flow_ratio"] for record in history] for history in histories]
    assert len(ratios[0]) == len(histories[0])
    assert ratios[0] == ratios[1]


def test_trainer_ddp_resumes_each_ranks_own_random_draws(trainer_runs: dict[str, Any]) -> None:
    """Dropout on shards of unequal size: a resumed run ends with the straight run's weights."""
    for rank in ("rank0", "rank1"):
        run = trainer_runs["straight"][rank]["dropout"]
        for name, value in run["straight"].items():
            assert torch.equal(run["resumed"][name], value), (rank, name)
            assert torch.equal(run["from_epoch_start"][name], value), (rank, name)


def test_trainer_ddp_regressor_skips_and_stops_together(trainer_runs: dict[str, Any]) -> None:
    """Padded series, a filler shard, an inf loss on one rank only, a stop asked by rank 1."""
    single = trainer_runs["single"]["regressor"]
    assert len(single["history"]) == 2  # stopped after epoch 1
    assert single["saved_stop"] is True  # a resume from the last checkpoint trains no further
    assert single["history"][0]["skipped_batches"] == 1  # the overflowing batch, each epoch
    for rank in ("rank0", "rank1"):
        run = trainer_runs["straight"][rank]["regressor"]
        assert run["saved_stop"] is True  # rank 1 asked; rank 0 wrote the file
        torch.testing.assert_close(run["weights"], single["weights"], rtol=1e-5, atol=1e-6)
        assert len(run["history"]) == len(single["history"])
        for got, expected in zip(run["history"], single["history"], strict=True):
            assert got["skipped_batches"] == expected["skipped_batches"]
            for key in ("loss", "mae", "val_loss", "val_mae"):
                assert got[key] == pytest.approx(expected[key], rel=1e-5)


def test_trainer_ddp_writes_the_checkpoints_once(trainer_runs: dict[str, Any]) -> None:
    files = trainer_runs["straight"]["files"]
    assert files == trainer_runs["single"]["files"]  # rank 0 alone: no duplicates, no temp files
    assert "last.ckpt" in files


def test_trainer_ddp_resumes_in_the_middle_of_an_epoch(trainer_runs: dict[str, Any]) -> None:
    """Interrupted in epoch 1 (rank 0 saves), resumed by a new Trainer on both ranks."""
    for rank in ("rank0", "rank1"):
        straight = trainer_runs["straight"][rank]
        run = straight["interrupted"]
        assert run["interrupted"] == [True, False]
        torch.testing.assert_close(run["weights"], straight["weights"])
        assert [h["epoch"] for h in run["history"]] == [0, 1, 2, 3]
        for got, expected in zip(run["history"], straight["history"], strict=True):
            assert got["val_accuracy"] == expected["val_accuracy"]
            if got["epoch"] != 1:  # epoch 1's training sums before the stop are rank 0's only
                assert got["loss"] == pytest.approx(expected["loss"], rel=1e-6)


def test_trainer_ddp_resumes_a_crashed_run_from_last(trainer_runs: dict[str, Any]) -> None:
    resumed = trainer_runs["resume"]
    assert "rank 1 crashed on purpose after epoch 1" in resumed["crash_output"]
    assert re.search(r"attempt 0 started at epoch 0", resumed["crash_output"])
    started = re.search(r"attempt 0 started at epoch (\d+)", resumed["output"])
    assert started is not None
    assert int(started.group(1)) >= 1  # the new launch resumed, it did not start over
    straight = trainer_runs["straight"]["rank0"]
    for rank in ("rank0", "rank1"):
        torch.testing.assert_close(resumed[rank]["weights"], straight["weights"])
        assert [h["epoch"] for h in resumed[rank]["history"]] == [0, 1, 2, 3]


def test_a_raising_trainer_rank_ends_the_job_with_its_error(tmp_path: Path) -> None:
    code, output, seconds = torchrun("trainer_fit.py", str(tmp_path), "crash")
    assert code != 0
    assert "RuntimeError: rank 1 crashed on purpose after epoch 1" in output
    assert not list(tmp_path.glob("rank*.pt"))  # no rank finished the fit
    assert seconds < QUICK_S  # the process-group timeout (300 s) was not needed
