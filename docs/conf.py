"""Sphinx configuration for rnnkit's documentation.

The build is strict (``sphinx-build -W -n``): every warning fails it and every cross-reference
must resolve. External references resolve through small local inventories (see
``_scripts/make_inventories.py``) because the docs are built offline. The build also runs every
example in ``examples/`` in its ``--smoke`` mode (see ``_ext/run_examples.py``), so a broken
example fails the docs build.
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
    "run_examples",
]

nitpicky = True
nitpick_ignore_regex = [
    # Type variables and private aliases that autodoc renders from annotations.
    ("py:class", r"rnnkit\..*\._[A-Za-z]\w*"),
    ("py:class", r"_[A-Za-z]\w*"),
    ("py:class", r"T_co|T|Self"),
    # NumPy's generic parameters render as bare names.
    ("py:class", r"numpy\.(float64|float32|uint8|int64|bool_|generic|dtype)"),
    ("py:class", r"np\..*"),
]

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

html_theme = "alabaster"
html_static_path = ["_static"]
exclude_patterns = ["_build", "_scripts", "_ext", "_inventories", "_snippets"]
