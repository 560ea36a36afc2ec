"""The shape of rl_platform's imports: the largest import cycle, imports that run up the layers,
imports inside functions, and the largest modules.

Every import in the package counts, those inside functions too (grimp, the graph behind
import-linter; annotation-only ``TYPE_CHECKING`` imports are left out). The layers are
read from pyproject.toml's import-linter layers contract.

    python bench/imports.py                          # this checkout
    python bench/imports.py --src ../old --label before   # another checkout of the repo

Writes bench/results/imports-<label>.json.
"""

from __future__ import annotations

import argparse
import ast
import json
import platform
import re
import subprocess
import sys
from pathlib import Path

import tomllib

PACKAGE = "rl_platform"
ROOT = Path(__file__).resolve().parents[1]


def contract_layers(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, int]:
    """Top-level module -> layer (ground floor 0), read from the import-linter contract."""
    contracts = tomllib.loads(pyproject.read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c["type"] == "layers")
    return {
        name.strip(" ()"): floor
        for floor, names in enumerate(reversed(layers))
        for name in re.split(r"[:|]", names)
    }


# Modules of before the redesign, for measuring an old checkout by the same layers.
FORMER = {"study_storage": "storage", "adapt": "adaptation"}
LAYERS = contract_layers()
FACADE = max(LAYERS.values()) + 1  # the root package: the public API, imported lazily


def layer(module: str) -> int:
    """The layer of a module of the package (its first name below the package)."""
    parts = module.split(".")
    if len(parts) == 1:
        return FACADE
    return LAYERS[FORMER.get(parts[1], parts[1])]


def import_graph(src: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in its code)."""
    import grimp

    sys.path.insert(0, str(src))
    graph = grimp.build_graph(PACKAGE, exclude_type_checking_imports=True, cache_dir=None)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def largest_cycle(edges: dict[str, set[str]]) -> list[str]:
    """The largest strongly connected component (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    best: list[str] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 and len(component) > len(best):
                    best = sorted(component)
    return best


def function_level_imports(package_dir: Path) -> int:
    """Imports of the package's own modules written inside a function body."""
    count = 0
    for path in package_dir.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and (
                    inner.level > 0 or (inner.module or "").startswith(PACKAGE)
                ):
                    count += 1
                elif isinstance(inner, ast.Import) and any(
                    a.name.startswith(PACKAGE) for a in inner.names
                ):
                    count += 1
    return count


def measure(src: Path) -> dict[str, object]:
    """The figures of one checkout."""
    edges = import_graph(src)
    upward = sorted(
        f"{a} -> {b}" for a, targets in edges.items() for b in targets if layer(b) > layer(a)
    )
    package_dir = src / PACKAGE
    lines = sorted(
        (
            (len(p.read_text().splitlines()), str(p.relative_to(src)))
            for p in package_dir.rglob("*.py")
        ),
        reverse=True,
    )
    cycle = largest_cycle(edges)
    commit = subprocess.run(
        ["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "commit": commit,
        "machine": f"{platform.node()} ({platform.machine()}, {platform.python_version()})",
        "modules": len(edges),
        "largest_cycle_modules": len(cycle),
        "largest_cycle": cycle,
        "upward_imports": len(upward),
        "upward": upward,
        "function_level_imports": function_level_imports(package_dir),
        "largest_modules": [{"lines": n, "path": p} for n, p in lines[:8]],
        "modules_over_500_lines": sum(1 for n, _ in lines if n > 500),
    }


def main() -> None:
    """Measure a checkout, print the figures and write them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=ROOT)
    parser.add_argument("--label", default="after")
    args = parser.parse_args()
    figures = measure(args.src.resolve())
    print(f"checkout {args.src} at {figures['commit']}")
    for key in (
        "modules",
        "largest_cycle_modules",
        "upward_imports",
        "function_level_imports",
        "modules_over_500_lines",
    ):
        print(f"  {key}: {figures[key]}")
    top = figures["largest_modules"][0]
    print(f"  largest module: {top['path']} ({top['lines']} lines)")
    out = Path(__file__).resolve().parent / "results" / f"imports-{args.label}.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
