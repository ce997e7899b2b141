"""The README's quick start runs as printed, and stays the same code as the docs' snippet."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import rnnkit

ROOT = Path(__file__).resolve().parents[1]
SNIPPET = ROOT / "docs" / "_snippets" / "quickstart.py"
sys.path.insert(0, str(ROOT / "examples"))

import _mnist_standin as standin  # noqa: E402


def _readme_block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"## Quick start\n.*?```python\n(.*?)```", readme, flags=re.S)
    assert match is not None, "README.md has no python block under '## Quick start'"
    return match.group(1)


def test_readme_quick_start_is_the_docs_snippet() -> None:
    snippet = SNIPPET.read_text(encoding="utf-8").split("\n", 2)[2]
    assert _readme_block().strip() == snippet.strip()


def test_readme_quick_start_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The quick start downloads MNIST into ./data; here ./data holds a small stand-in in the
    # same IDX format, and one epoch stands in for five.
    standin.write_mnist_standin(tmp_path / "data", train_size=256, test_size=64, seed=0)
    code = _readme_block().replace("download=True", "download=False")
    assert "epochs = 5\n" in code
    code = code.replace("epochs = 5\n", "epochs = 1\n")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "quickstart"}
    exec(compile(code, "README.md", "exec"), namespace)
    # The recommended recipe: the learning rate decays along a cosine, to 0 after the last epoch.
    trainer = namespace["trainer"]
    assert isinstance(trainer, rnnkit.Trainer)
    assert trainer.optimizer is not None
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    out = capsys.readouterr().out
    assert re.search(r"'accuracy': 0\.\d+", out), out
    assert "output  (N, L, D·H_out) = (128, 28, 128)" in out
    assert (tmp_path / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
