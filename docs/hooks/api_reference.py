"""MkDocs hook: the public API page follows the root package's façade.

``rl_platform/__init__.py`` loads each public name lazily from the module that defines
it; this hook reads those imports (statically, with ``ast``: nothing is imported) and
writes one mkdocstrings ``::: module.name`` block per name into ``docs/reference/api.md``
in place of its marker line. When a name moves, the façade moves with it and so does
the page.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

MARKER = "<!-- api-reference -->"
PAGE = "reference/api.md"
FACADE = Path(__file__).resolve().parents[2] / "rl_platform" / "__init__.py"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the marker on the API page with one mkdocstrings block per public name."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} lost its marker line {MARKER!r}")
    names = public_names(FACADE.read_text())
    if not names:
        raise ValueError(f"{FACADE}: found no public name to document")
    blocks = [f"::: {path}" for path in names.values()]
    return markdown.replace(MARKER, "\n\n".join(blocks))


def public_names(source: str) -> dict[str, str]:
    """``name -> dotted path of its definition`` for the façade's ``__all__`` names.

    Reads ``from MODULE import NAME`` statements anywhere in the module (the lazy
    ``__getattr__`` included) and string-to-string dict literals (a lazy-import table
    of ``name -> "module"`` or ``"module:attribute"``). Private names and
    ``__version__`` are left out.
    """
    tree = ast.parse(source)
    exported: list[str] = []
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            exported = [ast.literal_eval(e) for e in node.value.elts]  # type: ignore[attr-defined]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                found.setdefault(alias.asname or alias.name, f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and isinstance(value, ast.Constant):
                    if isinstance(key.value, str) and isinstance(value.value, str):
                        module, _, attribute = value.value.partition(":")
                        if module.startswith("rl_platform"):
                            found.setdefault(key.value, f"{module}.{attribute or key.value}")
    return {
        name: found[name]
        for name in exported
        if not name.startswith("_") and name in found and found[name].startswith("rl_platform")
    }
