"""Static import graph of a monorepo: the factories a service needs, from its command's module.

ast only, nothing is imported or executed. Every import statement counts, also inside functions
and `try:` blocks: a lazy import still runs one day, and a factory kept needlessly costs a few KB
while one missing costs an outage. Imports of modules outside the tree (stdlib, tier packages)
are ignored. `importlib.import_module("x")` with a literal string counts too.
"""

from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SourceIndex:
    """Dotted module name -> file, for every module under the tree's top-level packages."""

    root: Path
    modules: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def scan(cls, root: Path) -> SourceIndex:
        index = cls(root.resolve())
        for path in sorted(index.root.rglob("*.py")):
            relative = path.relative_to(index.root)
            if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
                continue
            parts = list(relative.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            if parts and all(part.isidentifier() for part in parts):
                index.modules[".".join(parts)] = path
        return index

    def is_package(self, module: str) -> bool:
        return self.modules.get(module, Path()).name == "__init__.py"


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)] if package else []
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and _is_import_module(node) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
    return {name for name in names if name}


def _is_import_module(node: ast.Call) -> bool:
    func = node.func
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id == "import_module"
    )


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def reachable_modules(index: SourceIndex, start: str) -> set[str]:
    """Every in-tree module importing `start` loads (parents packages included)."""
    seen: set[str] = set()
    todo = [m for m in _with_parents(start) if m in index.modules]
    if start not in index.modules:
        raise KeyError(f"module {start!r} is not in {index.root}")
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        tree = ast.parse(
            index.modules[module].read_text(encoding="utf-8"), filename=str(index.modules[module])
        )
        for name in _imported_names(tree, module, index.is_package(module)):
            # `from a.b import c`: c may be a submodule or just a name; take what exists.
            todo.extend(m for m in _with_parents(name) if m in index.modules and m not in seen)
    return seen


def command_module(command: list[str] | tuple[str, ...]) -> str | None:
    """`python3 -m report.worker` -> `report.worker`; other commands cannot be analysed."""
    for flag, value in itertools.pairwise(command):
        if flag == "-m":
            return value
    return None


def minimal_factories(index: SourceIndex, command: list[str] | tuple[str, ...]) -> list[str]:
    module = command_module(command)
    if module is None:
        raise ValueError(
            f"cannot find the module of command {list(command)} (only `python -m X` is analysed)"
        )
    return sorted({name.split(".", 1)[0] for name in reachable_modules(index, module)})
