"""A Sphinx extension that runs every example in ``examples/`` with ``--smoke``.

A broken example then fails the docs build. The examples run once per build, before reading
the sources; set ``RNNKIT_DOCS_SKIP_EXAMPLES=1`` to skip them while editing prose.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_scripts() -> list[Path]:
    """Return the example scripts, sorted by name."""
    return sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


def run_example(script: Path, out_dir: Path) -> None:
    """Run one example in smoke mode; raise :class:`ExtensionError` when it fails."""
    cmd = [sys.executable, str(script), "--smoke", "--out", str(out_dir / script.stem)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=EXAMPLES.parent, check=False)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise ExtensionError(f"example {script.name} failed in --smoke mode:\n{tail}")


def run_all(app: Sphinx) -> None:
    """Run every example once, at the start of the build."""
    if os.environ.get("RNNKIT_DOCS_SKIP_EXAMPLES"):
        return
    out_dir = Path(app.outdir).parent / "examples-smoke"
    for script in example_scripts():
        run_example(script, out_dir)


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the hook with Sphinx."""
    app.connect("builder-inited", run_all)
    return {"parallel_read_safe": True, "version": "1"}
