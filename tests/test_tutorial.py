"""The tutorial page's code runs as printed and prints what the page says it prints."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

SNIPPETS = Path(__file__).resolve().parents[1] / "docs" / "_snippets"
PAGE = SNIPPETS.parent / "tutorial.rst"


def _run(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(SNIPPETS / name), run_name="__main__")
    return capsys.readouterr().out


def _expected_block(after: str) -> str:
    """The ``text`` block that follows the line ``after`` on the tutorial page."""
    page = PAGE.read_text(encoding="utf-8")
    match = re.search(re.escape(after) + r".*?\.\. code-block:: text\n\n(.*?)\n\n(?! )", page, re.S)
    assert match is not None, f"no output block after {after!r} on {PAGE.name}"
    return "\n".join(line.strip() for line in match.group(1).splitlines())


@pytest.mark.parametrize(
    ("snippet", "marker"),
    [
        ("tutorial_loop.py", "tutorial_loop.py prints"),
        ("tutorial_trainer.py", "tutorial_trainer.py prints"),
        ("tutorial_resume.py", "tutorial_resume.py prints"),
    ],
)
def test_tutorial_snippet_prints_the_page_output(
    snippet: str,
    marker: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = _run(snippet, tmp_path, monkeypatch, capsys)
    expected = _expected_block(marker)
    # Losses are printed with every digit; compare them to four decimals.
    rounded = re.sub(r"(\d\.\d{4})\d+", r"\1", out.strip())
    assert rounded == re.sub(r"(\d\.\d{4})\d+", r"\1", expected)


def test_tutorial_shape_errors_are_the_page_errors() -> None:
    import torch

    import rnnkit

    page = PAGE.read_text(encoding="utf-8")
    model = rnnkit.SequenceClassifier(input_size=4, num_classes=2, hidden_size=32)
    for x in (torch.randn(1024, 20), torch.randn(1024, 20, 3)):
        with pytest.raises(rnnkit.ShapeError) as caught:
            model(x)
        first = str(caught.value).split(" Hint:")[0]
        assert first in " ".join(page.split()), first
