"""Sphinx configuration for rnnkit's documentation.

The build is strict (``sphinx-build -W -n``): every warning fails it and every cross-reference
must resolve. External references resolve through small local inventories (see
``_scripts/make_inventories.py``) because the docs are built offline. sphinx-gallery runs every
example in ``examples/`` in its ``--smoke`` mode and renders its code, output and plots (see
``_ext/png_scraper.py``), so a broken example fails the docs build.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import rnnkit  # noqa: E402

project = "rnnkit"
author = "The rnnkit developers"
copyright = "2026, The rnnkit developers"
release = rnnkit.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
    "myst_parser",  # CHANGELOG.md, included by changelog.rst
]
source_suffix = {".rst": "restructuredtext"}  # Markdown only where a page includes it
myst_heading_anchors = 3

sphinx_gallery_conf = {
    "examples_dirs": ["../examples"],
    "gallery_dirs": ["examples"],
    "filename_pattern": r"/[a-z][a-z_]*\.py$",  # run every example; `_helpers.py` are modules
    "ignore_pattern": r"^_",
    # named, not passed, so that Sphinx can cache the configuration (docs/_ext is on sys.path)
    "reset_argv": "png_scraper.reset_argv",
    "image_scrapers": ("png_scraper.scraper",),
    "download_all_examples": False,
    "remove_config_comments": True,
    "min_reported_time": 3600,  # no per-example timing table: smoke times mean nothing
    "show_signature": False,
}

nitpicky = True
nitpick_ignore_regex = [
    # Type variables and private aliases that autodoc renders from annotations.
    ("py:class", r"rnnkit\..*\._[A-Za-z]\w*"),
    ("py:class", r"_[A-Za-z]\w*"),
    ("py:class", r"T_co|T|Self"),
    # NumPy's generic parameters render as bare names.
    ("py:class", r"numpy\.(float64|float32|uint8|int64|bool_|generic|dtype)"),
    ("py:class", r"np\..*"),
    # Not in the offline torch inventory (docs/_inventories/torch.inv).
    ("py:class", r"torch\.nn\.DataParallel|torch\.SymInt"),
]
suppress_warnings = ["myst.header"]  # CHANGELOG.md's sections start at level 2 once included

autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", str(HERE / "_inventories" / "python.inv")),
    "torch": ("https://docs.pytorch.org/docs/stable", str(HERE / "_inventories" / "torch.inv")),
    "numpy": ("https://numpy.org/doc/stable", str(HERE / "_inventories" / "numpy.inv")),
}
intersphinx_disabled_reftypes: list[str] = []

html_theme = "pydata_sphinx_theme"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
html_title = "rnnkit"
html_static_path = ["_static"]
exclude_patterns = ["_build", "_scripts", "_ext", "_inventories", "_snippets"]
