"""User-facing text speaks to a user: no build history, run labels or CI-only paths.

Scanned: the docs' sources (``docs/**/*.rst``), ``README.md``, ``CHANGELOG.md``, the examples
and the package's source files (docstrings, messages and comments alike). Not scanned: the
tests, the benchmarks and ``benchmarks/NOTES.md`` (contributor material, where run history
belongs), and pages generated during the docs build.

Each pattern is narrow enough for ordinary prose: "runs a loop" is not a run label, and an
upstream bug cited as "pytorch issue 149194" is a reference a user can follow.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ("docs/_build/", "docs/examples/")

PATTERNS = {
    "an issue number": re.compile(r"(?<!pytorch )(?<!PyTorch )\bissue \d+", re.I),
    "'the brief'": re.compile(r"\bthe brief\b", re.I),
    # "run g", "runs h and i", "Run j": a lowercase letter a-j used as a label; "runs a loop",
    # "run e.g." and "run a-b" are prose.
    "a run label": re.compile(
        r"\b[Rr]uns? (?:[b-j]\b(?![.\-']\w)|a\b(?=[,;:)]| and [b-j]\b| to [b-j]\b))"
    ),
    "the CI machine's data folder (../shared)": re.compile(r"\.\./shared"),
    "a code review": re.compile(r"\breview(?:s|ed|ing)?\b", re.I),
    # a work session, not onnxruntime's InferenceSession or a `session` variable in code
    "a work session": re.compile(
        r"\b(?:this|that|a|an|the|one|each|every|earlier|previous|next|last) session\b", re.I
    ),
}

# (file, pattern name) pairs owned by another line of work and fixed there; each entry names
# why it is allowed. Keep this list empty when nothing is pending.
PENDING: dict[tuple[str, str], str] = {}


def _sources() -> list[Path]:
    files = [*ROOT.glob("docs/**/*.rst"), ROOT / "README.md", ROOT / "CHANGELOG.md"]
    files += [*ROOT.glob("examples/*.py"), *ROOT.glob("examples/*.rst")]
    files += [*ROOT.glob("src/**/*.py")]
    return sorted(f for f in files if not str(f.relative_to(ROOT)).startswith(GENERATED))


def find_build_history(text: str) -> list[tuple[int, str, str]]:
    """``(line number, pattern name, line)`` for every line of ``text`` that matches."""
    hits = []
    for number, line in enumerate(text.splitlines(), start=1):
        for name, pattern in PATTERNS.items():
            if pattern.search(line):
                hits.append((number, name, line.strip()))
    return hits


def test_user_facing_text_has_no_build_history() -> None:
    problems = []
    for path in _sources():
        relative = path.relative_to(ROOT).as_posix()
        for number, name, line in find_build_history(path.read_text(encoding="utf-8")):
            if (relative, name) not in PENDING:
                problems.append(f"{relative}:{number}: {name}: {line}")
    assert not problems, "Build history in user-facing text:\n" + "\n".join(problems)


def test_patterns_flag_history_and_spare_prose() -> None:
    flagged = [
        "as issue 5 asked",
        "The brief measured it",
        "in run g and run h",
        "Runs h and i drew the bar",
        "Run j came after",
        "runs a and b",
        "python x.py --data-dir ../shared/data",
        "after the review fixes",
        "reviewed in this session",
    ]
    spared = [
        "it runs a loop over batches",
        "Run a training step",
        "packed layers are slow (pytorch issue 149194)",
        "the sequence moves, the network stays",
        "a shared disk",
        "run e.g. with --smoke",
        'session = ort.InferenceSession("model.onnx")',
    ]
    for text in flagged:
        assert find_build_history(text), text
    for text in spared:
        assert not find_build_history(text), text
