"""Resolve ``:doc:`` links to pages that were renamed, so old links keep working.

Maps an old page name to the page that replaced it; a link to the old name is resolved as a
link to the new page (with the new page's title when the link gives none).
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

ALIASES = {"performance": "benchmarks"}
"""Old page name -> the page that replaced it."""


def _resolve(
    app: Sphinx, env: BuildEnvironment, node: Any, contnode: nodes.TextElement
) -> nodes.reference | None:
    target = str(node.get("reftarget", "")).lstrip("/")
    if node.get("reftype") != "doc" or target not in ALIASES:
        return None
    node["reftarget"] = "/" + ALIASES[target]
    std: Any = env.get_domain("std")
    resolved: nodes.reference | None = std.resolve_xref(
        env, node["refdoc"], app.builder, "doc", node["reftarget"], node, contnode
    )
    return resolved


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the resolver for unresolved ``:doc:`` links."""
    app.connect("missing-reference", _resolve)
    return {"parallel_read_safe": True}
