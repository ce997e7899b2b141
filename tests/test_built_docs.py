"""Checks of the built documentation site: the text a user reads and the gallery's plots.

They read the HTML that ``sphinx-build -b html docs docs/_build/html`` writes, so they run
only when ``RNNKIT_BUILT_DOCS`` names that folder (CI sets it after its docs build) and are
skipped otherwise; the test of the text extraction itself always runs. The source-level
scan is ``test_docs_text.py``; this one also sees what the build adds: the gallery's captured
output, the API pages from docstrings, the CHANGELOG.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import pytest

from test_docs_text import find_build_history

ROOT = Path(__file__).resolve().parents[1]
BUILT = os.environ.get("RNNKIT_BUILT_DOCS")
needs_site = pytest.mark.skipif(not BUILT, reason="RNNKIT_BUILT_DOCS is not set")

# raw copies of the sources and highlighted module source: covered by the source-level scan
SKIPPED_FOLDERS = ("_sources", "_modules", "_static", "_downloads", "_images")


def _site() -> Path:
    site = ROOT / str(BUILT)
    assert (site / "index.html").is_file(), f"no built site at {site}"
    return site


def page_text(markup: str) -> str:
    """The visible text of an HTML page: scripts, styles and tags removed, entities decoded."""
    markup = re.sub(r"<(script|style)\b.*?</\1>", " ", markup, flags=re.S | re.I)
    text = html.unescape(re.sub(r"<[^>]+>", " ", markup))
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def test_page_text_drops_markup() -> None:
    markup = "<p>a &amp; b</p><script>issue 5</script><div>\n <b>c</b></div>"
    assert page_text(markup) == "a & b\nc"


@needs_site
def test_built_pages_have_no_build_history() -> None:
    site, problems = _site(), []
    for page in sorted(site.rglob("*.html")):
        relative = page.relative_to(site)
        if relative.parts[0] in SKIPPED_FOLDERS:
            continue
        text = page_text(page.read_text(encoding="utf-8"))
        problems += [
            f"{relative}:{n}: {name}: {line}" for n, name, line in find_build_history(text)
        ]
    assert not problems, "Build history in the built site:\n" + "\n".join(problems)


@needs_site
def test_every_gallery_page_shows_its_plots() -> None:
    site = _site()
    examples = sorted(p.stem for p in (ROOT / "examples").glob("[a-z]*.py"))
    assert examples
    for name in examples:
        markup = (site / "examples" / f"{name}.html").read_text(encoding="utf-8")
        images = re.findall(rf'<img[^>]+src="[^"]*sphx_glr_{name}_\d+\.png"', markup)
        assert images, f"the gallery page of examples/{name}.py shows no plot"
        for source in re.findall(rf'src="([^"]*sphx_glr_{name}_\d+\.png)"', markup):
            assert (site / "examples" / source).resolve().is_file(), source
