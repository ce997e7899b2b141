"""Every module of rnnkit stays small enough to read in one sitting (at most 500 lines)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src" / "rnnkit"
MAX_LINES = 500

# Modules allowed over the limit, as paths relative to the repository root; empty, as every
# module is within it. An entry would be a debt to pay off by splitting the module along a real
# seam, then removing it from here. test_allowed_modules_are_still_over_the_limit guards the
# list itself: an entry whose module no longer exists or is back within the limit fails it, so
# the list cannot go stale.
ALLOWED_OVER: frozenset[str] = frozenset()


def _line_count(path: Path) -> int:
    with path.open(encoding="utf-8") as handle:
        return sum(1 for _ in handle)


def _modules() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_the_source_tree_is_found() -> None:
    assert len(_modules()) > 10, f"no modules found under {SOURCE}"


def test_no_module_exceeds_the_line_limit() -> None:
    too_long = {
        _relative(path): lines
        for path in _modules()
        if (lines := _line_count(path)) > MAX_LINES and _relative(path) not in ALLOWED_OVER
    }
    assert not too_long, (
        f"Expected every module to have at most {MAX_LINES} lines, but got {too_long}. "
        "Hint: split the module along a real seam into complete units (an underscore module "
        "of the same package), keeping its public names importable from where they are."
    )


def test_allowed_modules_are_still_over_the_limit() -> None:
    missing = sorted(allowed for allowed in ALLOWED_OVER if not (ROOT / allowed).exists())
    assert not missing, f"{missing} are in ALLOWED_OVER but do not exist; remove them from it."
    within = {
        allowed: lines
        for allowed in sorted(ALLOWED_OVER)
        if (lines := _line_count(ROOT / allowed)) <= MAX_LINES
    }
    assert not within, (
        f"{within} are within the limit of {MAX_LINES} lines; remove them from ALLOWED_OVER so "
        "they stay within it."
    )
