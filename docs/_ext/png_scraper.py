"""A sphinx-gallery image scraper for the PNG files an example writes into its ``--out`` folder.

rnnkit's examples save their plots with ``savefig`` and close the figures, so the default
matplotlib scraper, which collects open figures, would find none. This scraper shows every PNG
the example wrote since the previous code block.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sphinx_gallery.scrapers import figure_rst

BUILD = Path(__file__).resolve().parents[1] / "_build"


def out_dir(src_file: str) -> Path:
    """Return the ``--out`` folder the docs build gives the example at ``src_file``."""
    return BUILD / "examples-smoke" / Path(src_file).stem


def reset_argv(gallery_conf: dict[str, Any], script_vars: dict[str, Any]) -> list[str]:
    """Run every example in its smoke mode, writing into a folder of the build."""
    folder = out_dir(script_vars["src_file"])
    shutil.rmtree(folder, ignore_errors=True)
    return ["--smoke", "--out", str(folder)]


class PngScraper:
    """Collect the PNG files the running example has written since the last block."""

    def __init__(self) -> None:
        self.seen: set[Path] = set()

    def __repr__(self) -> str:
        # sphinx-gallery caches its configuration by repr; a fixed one keeps builds incremental
        return "PngScraper()"

    def __call__(self, block: Any, block_vars: dict[str, Any], gallery_conf: Any) -> str:
        """Copy the new PNG files to the gallery's image paths; return their reST."""
        folder = out_dir(block_vars["src_file"])
        new = sorted(p for p in folder.rglob("*.png") if p not in self.seen)
        self.seen.update(new)
        targets = []
        for png, target in zip(new, block_vars["image_path_iterator"], strict=False):
            shutil.copyfile(png, target)
            targets.append(target)
        return figure_rst(targets, gallery_conf["src_dir"])


scraper = PngScraper()
"""The instance ``sphinx_gallery_conf["image_scrapers"]`` names."""
