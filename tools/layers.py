"""The layering check: imports point one way (DESIGN.md, "Layout").

    ingest → asr → detectors → alerts → store      review, then app, sit above and wire them

A module may import its own package and the packages to its left, never one to its right; the store
knows no web (review) and no app; review may not import app (the composition root). Every import
counts, including those inside functions and under `TYPE_CHECKING`: a lazy import is still a
dependency.

It also holds classes to a size (`MAX_CLASS_LINES`, counted from ``class`` to the class's last line):
a class that grows past it is doing several stages' work and wants splitting, as the monitor once did.

Run `python -m tools.layers` (exit status 1 and one line per violation when the direction is broken or
a class is too large); tests/test_layers.py runs the same checks.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LAYERS", "MAX_CLASS_LINES", "LargeClass", "Violation", "check", "check_class_sizes", "main"]

LAYERS = ("ingest", "asr", "detectors", "alerts", "store", "review", "app")
MAX_CLASS_LINES = 400
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Violation:
    path: str
    line: int
    importer: str
    imported: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported} (to its right)"


@dataclass(frozen=True, slots=True)
class LargeClass:
    path: str
    line: int
    name: str
    lines: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: class {self.name} has {self.lines} lines (at most {MAX_CLASS_LINES})"


def _imports(tree: ast.AST, module: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = module.split(".")[: -node.level]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            out.append((node.lineno, name))
    return out


def check(root: Path = ROOT) -> list[Violation]:
    rank = {p: i for i, p in enumerate(LAYERS)}
    found: list[Violation] = []
    for pkg in LAYERS:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root)
            module = ".".join(rel.with_suffix("").parts)
            tree = ast.parse(path.read_text(encoding="utf-8"), str(rel))
            for line, name in _imports(tree, module):
                top = name.split(".")[0]
                if top in rank and rank[top] > rank[pkg]:
                    found.append(Violation(str(rel), line, pkg, name))
    return found


def check_class_sizes(root: Path = ROOT, limit: int = MAX_CLASS_LINES) -> list[LargeClass]:
    """Classes in the packages longer than `limit` lines."""
    found: list[LargeClass] = []
    for pkg in LAYERS:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(rel))):
                if isinstance(node, ast.ClassDef):
                    n = (node.end_lineno or node.lineno) - node.lineno + 1
                    if n > limit:
                        found.append(LargeClass(str(rel), node.lineno, node.name, n))
    return found


def main() -> int:
    violations = check()
    large = check_class_sizes()
    for v in violations:
        print(v)
    for c in large:
        print(c)
    if violations:
        print(f"{len(violations)} import(s) against the layering: {' → '.join(LAYERS)}", file=sys.stderr)
    if large:
        print(f"{len(large)} class(es) over {MAX_CLASS_LINES} lines", file=sys.stderr)
    if violations or large:
        return 1
    print(f"layering ok: {' → '.join(LAYERS)}; no class over {MAX_CLASS_LINES} lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
