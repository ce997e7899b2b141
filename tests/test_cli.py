"""The command line: ``python -m rnnkit shapes ...`` prints RecurrentSpec.describe()."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest

from rnnkit.__main__ import main
from rnnkit.shapes import RecurrentSpec

ISSUE_EXAMPLE = shlex.split(
    "shapes --cell lstm --input-size 28 --hidden-size 128 --num-layers 2 --bidirectional "
    "--batch 64 --length 28"
)


def test_shapes_prints_the_table_of_the_issue_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(ISSUE_EXAMPLE) == 0
    out = capsys.readouterr().out
    spec = RecurrentSpec("lstm", 28, 128, num_layers=2, bidirectional=True)
    assert out == spec.describe(64, 28) + "\n"
    assert "output  (N, L, D·H_out) = (64, 28, 256)\n" in out
    assert "c_0     (D·num_layers, N, H_cell) = (4, 64, 128)\n" in out


@pytest.mark.parametrize(
    ("flags", "spec", "n"),
    [
        (["--proj-size", "32"], RecurrentSpec("lstm", 28, 128, 2, True, True, 32), 64),
        (["--time-first"], RecurrentSpec("lstm", 28, 128, 2, True, False), 64),
    ],
)
def test_shapes_flags_map_to_the_spec(
    flags: list[str], spec: RecurrentSpec, n: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*ISSUE_EXAMPLE, *flags]) == 0
    assert capsys.readouterr().out == spec.describe(n, 28) + "\n"


def test_shapes_unbatched(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(shlex.split("shapes --input-size 1 --hidden-size 16 --unbatched --length 100")) == 0
    out = capsys.readouterr().out
    assert out == RecurrentSpec("rnn", 1, 16).describe(None, 100) + "\n"
    assert "x       (L, H_in) = (100, 1)\n" in out


@pytest.mark.parametrize(
    ("command", "error"),
    [
        (
            "shapes --cell gru --proj-size 4 --input-size 2 --hidden-size 8 --batch 3 --length 5",
            "rnnkit shapes: error: Expected proj_size = 0 for cell='gru', but got proj_size=4.",
        ),
        (
            "shapes --input-size 2 --hidden-size 8 --batch 0 --length 5",
            "argument --batch: must be >= 1, got 0",
        ),
        (
            "shapes --input-size 2 --hidden-size 8 --batch 3 --unbatched --length 5",
            "argument --unbatched: not allowed with argument --batch",
        ),
        (
            "shapes --input-size two --hidden-size 8 --unbatched --length 5",
            "argument --input-size: expected an integer, got 'two'",
        ),
        ("", "the following arguments are required: COMMAND"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    command: str, error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(shlex.split(command)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert error in captured.err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shapes", "--help"]) == 0
    assert "--bidirectional" in capsys.readouterr().out


def test_python_dash_m_rnnkit_shapes() -> None:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    result = subprocess.run(
        [sys.executable, "-m", "rnnkit", *ISSUE_EXAMPLE],
        capture_output=True,
        check=False,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    spec = RecurrentSpec("lstm", 28, 128, num_layers=2, bidirectional=True)
    assert result.stdout.decode("utf-8").splitlines() == spec.describe(64, 28).splitlines()


def test_a_closed_pipe_ends_quietly() -> None:
    # `python -m rnnkit shapes ... | head -1`: the reader goes away before the table is out.
    code = (
        "import os, sys; r, w = os.pipe(); os.close(r); os.dup2(w, sys.stdout.fileno()); "
        "from rnnkit.__main__ import main; sys.exit(main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *ISSUE_EXAMPLE], capture_output=True, check=False, timeout=120
    )
    assert result.returncode == 1
    assert b"Traceback" not in result.stderr
