"""Developer tasks for rnnkit, run with ``nox -s NAME``.

Every session runs in the environment nox itself was started from (``venv_backend="none"``):
rnnkit's main dependency, PyTorch, is a multi-gigabyte wheel, and one environment with the
``dev`` extra (``bash scripts/venv.sh`` makes it) serves every session instead of one copy per
session. Start nox from that environment: ``$(bash scripts/venv.sh)/bin/nox -s tests``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
PY = sys.executable  # the environment nox runs in; tools run as modules of it, PATH or not
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))

nox.options.sessions = ["tests", "typecheck", "imports", "lint", "docs"]
nox.options.default_venv_backend = "none"


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite; extra arguments go to pytest (``nox -s tests -- -k shapes``)."""
    session.run(PY, "-m", "pytest", *session.posargs)


@nox.session
def typecheck(session: nox.Session) -> None:
    """Run ``mypy --strict`` on src, tests, examples, benchmarks and this noxfile."""
    session.run(PY, "-m", "mypy", *session.posargs)


@nox.session
def imports(session: nox.Session) -> None:
    """Check the import contract (the subpackages are layers) with import-linter."""
    session.run(str(Path(PY).with_name("lint-imports")), "--no-cache")


@nox.session
def lint(session: nox.Session) -> None:
    """Run ruff's linter (docstring and complexity rules included) and its format check."""
    session.run(PY, "-m", "ruff", "check", ".")
    session.run(PY, "-m", "ruff", "format", "--check", ".")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the docs strictly (``-W -n``); the build runs every example in smoke mode."""
    session.run(PY, "-m", "sphinx", "-W", "-n", "-b", "html", "docs", "docs/_build/html")


@nox.session
def examples(session: nox.Session) -> None:
    """Run every example in ``examples/`` in its short ``--smoke`` mode."""
    for script in EXAMPLES:
        out = ROOT / "docs" / "_build" / "examples-smoke" / script.stem
        session.run(PY, str(script), "--smoke", "--out", str(out))
