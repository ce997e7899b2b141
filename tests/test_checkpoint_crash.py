"""Crash safety: a process SIGKILLed while writing checkpoints leaves a loadable, complete one.

One helper process (started once per module) forks writers and kills them:

- at random moments, six times, while they write checkpoints in a loop, each with a
  self-checking payload (``step`` and a 2 MiB tensor filled with ``step``);
- at each point of the write protocol in turn: halfway through the data, before the file's
  fsync, before the rename, after the rename (before the folder's fsync).

The test then loads what each kill left on disk with :func:`rnnkit.load_checkpoint`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from rnnkit.io.checkpoint import load_checkpoint

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL (POSIX)"),
]

DRIVER = textwrap.dedent(
    """
    import io, json, os, random, shutil, signal, sys, time
    import torch
    torch.set_num_threads(1)  # no thread pool: forking stays safe
    from torch import nn
    from rnnkit.io import _atomic as safe_save
    from rnnkit.io.checkpoint import make_checkpoint

    SIZE = 1 << 19
    MODEL = nn.Linear(2, 2)

    def checkpoint(step):
        state = {"step": step, "tensor": torch.full((SIZE,), float(step))}
        return make_checkpoint(MODEL, state, {})

    def fork(target, *args):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            try:
                target(*args, write)
            finally:
                os._exit(3)
        os.close(write)
        return pid, read

    def finish(pid, read):
        _, status = os.waitpid(pid, 0)
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
        os.close(read)
        signal_number = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        return [int(word) for word in b"".join(chunks).split()], signal_number

    def temporaries(folder):
        return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))

    def writer(path, start, write):
        step = start
        while True:
            safe_save.atomic_save(checkpoint(step), path)
            os.write(write, f"{step} ".encode())
            step += 1

    def random_kills(folder, rounds):
        rng = random.Random(0)
        path = os.path.join(folder, "loop.ckpt")
        report = []
        for index in range(rounds):
            start = 1000 * index
            pid, read = fork(writer, path, start)
            time.sleep(rng.uniform(0.05, 0.6))
            os.kill(pid, signal.SIGKILL)
            completed, signal_number = finish(pid, read)
            snapshot = os.path.join(folder, f"after-kill-{index}.ckpt")
            if os.path.exists(path):
                shutil.copyfile(path, snapshot)
            report.append({"start": start, "completed": completed, "signal": signal_number,
                           "snapshot": snapshot, "temporaries": temporaries(folder)})
        return report

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    def half_then_die(obj, handle):
        buffer = io.BytesIO()
        REAL_SAVE(obj, buffer)
        handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        handle.flush()
        die()

    REAL_SAVE = torch.save

    def staged_writer(path, stage, write):
        safe_save.atomic_save(checkpoint(0), path)
        os.write(write, b"0 ")
        if stage == "mid-write":
            torch.save = half_then_die
        elif stage == "before-fsync":
            os.fsync = die
        elif stage == "before-rename":
            os.replace = die
        elif stage == "after-rename":
            safe_save._fsync_dir = die
        safe_save.atomic_save(checkpoint(1), path)
        os.write(write, b"1 ")

    def stages(folder):
        report = {}
        for stage in ["mid-write", "before-fsync", "before-rename", "after-rename"]:
            sub = os.path.join(folder, stage)
            os.mkdir(sub)
            path = os.path.join(sub, "c.ckpt")
            completed, signal_number = finish(*fork(staged_writer, path, stage))
            report[stage] = {"path": path, "completed": completed, "signal": signal_number,
                             "temporaries": temporaries(sub)}
        return report

    folder = sys.argv[1]
    os.mkdir(os.path.join(folder, "loop"))
    os.mkdir(os.path.join(folder, "stages"))
    print(json.dumps({"random": random_kills(os.path.join(folder, "loop"), 6),
                      "stages": stages(os.path.join(folder, "stages"))}))
    """
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("crash")
    script = folder / "driver.py"
    script.write_text(DRIVER)
    done = subprocess.run(
        [sys.executable, str(script), str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _loaded_step(path: str) -> int:
    checkpoint = load_checkpoint(path)
    state = checkpoint["trainer"]
    step = int(state["step"])
    # the payload checks itself: every element equals the step it was saved with
    assert torch.equal(state["tensor"], torch.full((1 << 19,), float(step)))
    return step


def test_random_sigkills_always_leave_a_complete_checkpoint(report: dict[str, Any]) -> None:
    rounds = report["random"]
    assert len(rounds) == 6
    on_disk: int | None = None  # the step the file held after the previous kill
    for index, kill in enumerate(rounds):
        assert kill["signal"] == 9, f"round {index}: the writer was not SIGKILLed"
        completed = kill["completed"]
        # the last save reported complete (or the earlier file when none completed), or the
        # save in flight if the kill came after its rename but before it was reported
        allowed = {completed[-1], completed[-1] + 1} if completed else {on_disk, kill["start"]}
        on_disk = _loaded_step(kill["snapshot"]) if Path(kill["snapshot"]).exists() else None
        assert on_disk in allowed, (index, on_disk, allowed)
    assert any(kill["completed"] for kill in rounds), "no save completed in any round"


STAGES = {
    "mid-write": 0,
    "before-fsync": 0,
    "before-rename": 0,
    "after-rename": 1,
}


@pytest.mark.parametrize(("stage", "expected_step"), STAGES.items(), ids=STAGES)
def test_sigkill_at_each_point_of_the_write_leaves_old_or_new_never_partial(
    report: dict[str, Any], stage: str, expected_step: int
) -> None:
    kill = report["stages"][stage]
    assert kill["signal"] == 9
    assert kill["completed"] == [0]
    assert _loaded_step(kill["path"]) == expected_step
    # a hard kill cannot clean up: the interrupted temporary file stays (harmless, ignored)
    assert len(kill["temporaries"]) == (1 if expected_step == 0 else 0)
    assert all(name.startswith(".c.ckpt.") for name in kill["temporaries"])
