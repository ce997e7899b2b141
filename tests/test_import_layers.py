"""The import contract in pyproject.toml holds, and breaking it is caught."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, check=False
    )


def _copy_project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    return tmp_path


def test_the_layers_are_kept() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "broken"),
    [
        ("models/__init__.py", "import rnnkit.training", "The subpackages are layers"),
        ("shapes/_hints.py", "import rnnkit.models", "The subpackages are layers"),
        ("io/checkpoint.py", "import rnnkit.callbacks", "never imports a callback"),
    ],
)
def test_an_upward_import_breaks_the_contract(
    tmp_path: Path, module: str, bad_import: str, broken: str
) -> None:
    root = _copy_project(tmp_path)
    path = root / "src" / "rnnkit" / module
    path.write_text(path.read_text() + f"\n{bad_import}  # an upward import\n")
    done = _lint(root)
    assert done.returncode == 1, done.stdout
    assert f"{broken}" in done.stdout
    assert "BROKEN" in done.stdout


def test_no_package_imports_another_packages_private_module() -> None:
    """An underscore module is private to its package: ``rnnkit.a._b`` is imported only in ``a``."""
    src = ROOT / "src" / "rnnkit"
    private = re.compile(
        r"^\s*(?:from|import) rnnkit\.(\w+)\.(_\w+)|^\s*from rnnkit\.(\w+) import (_\w+)"
    )
    offenders = []
    for path in sorted(src.rglob("*.py")):
        package = path.relative_to(src).parts[0]
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = private.match(line)
            owner = match and (match.group(1) or match.group(3))
            if owner and not owner.startswith("_") and owner != package:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
