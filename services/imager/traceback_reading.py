"""Reads a crashed service's output: which module imported what that the image does not hold."""

from __future__ import annotations

import re
from dataclasses import dataclass

_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line \d+, in (?P<where>.+)$')
_IMPORT_ERROR = re.compile(r"^(?P<kind>ModuleNotFoundError|ImportError): (?P<message>.*)$")
_NO_MODULE = re.compile(r"No module named '(?P<name>[^']+)'")
_CANNOT_IMPORT = re.compile(r"cannot import name '(?P<name>[^']+)' from '(?P<module>[^']+)'")
_PYTHON_ROOTS = ("/app/", "/opt/kiln/venv/")


@dataclass(frozen=True)
class MissingImport:
    importer: str  # the module whose import failed ("report.worker")
    missing: str  # what it asked for ("core", or "core.text.slugify")
    line: str  # the error line itself

    def describe(self) -> str:
        return f"{self.importer} imports {self.missing}, which the image does not contain ({self.line})"


def find_missing_import(output: str) -> MissingImport | None:
    """The last import failure of a traceback in `output`, or None if it died of something else."""
    lines = output.splitlines()
    for index in range(len(lines) - 1, -1, -1):
        match = _IMPORT_ERROR.match(lines[index].strip())
        if match:
            return MissingImport(
                importer=_importer(lines[:index]) or "?",
                missing=_missing_name(match.group("message")),
                line=lines[index].strip(),
            )
    return None


def kept_factories_hint(missing: str, kept: tuple[str, ...]) -> str:
    """What to change when the image lacks `missing`, given the factories it keeps. A factory left
    out is the usual cause: an import whose module name is computed (importlib.import_module of
    an f-string) is one minimal-factories cannot see, so only this start-up proof catches it."""
    top = missing.split(".", 1)[0]
    if top in kept:
        return f"; factory {top} is in the image, but not {missing}"
    return (
        f"; the image keeps factories {', '.join(sorted(kept)) or '(none)'}: if {top} is a factory of "
        f"the monorepo, add it to this service's factories; if it is a package, to its tier"
    )


def _missing_name(message: str) -> str:
    if found := _NO_MODULE.search(message):
        return found.group("name")
    if found := _CANNOT_IMPORT.search(message):
        return f"{found.group('module')}.{found.group('name')}"
    return message


def _importer(lines: list[str]) -> str | None:
    """The innermost frame that is service code (not importlib, not Kiln's launcher)."""
    for line in reversed(lines):
        frame = _FRAME.match(line)
        if not frame:
            continue
        path, where = frame.group("path"), frame.group("where").strip()
        if path.startswith("<frozen") or "/importlib/" in path or path.endswith("kiln_launch.py"):
            continue
        if where.startswith("init "):  # a Cython module's import-time frame names its module
            return where.removeprefix("init ").strip()
        return _module_from_frame(path, where)
    return None


def _module_from_frame(path: str, where: str) -> str:
    """A Cython frame names its function by module and qualified name (`dialog.engine.load_engine`)
    and its file by the path it was compiled at, which may be the compiler's temporary directory
    (`kiln-compile-x/view/dialog/engine.py`): the module is the longest tail of that path that
    `where` starts with. A source frame's `where` is a bare name: its path is under /app."""
    parts = path.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts.pop()
    for start in range(len(parts)):
        dotted = ".".join(parts[start:])
        if dotted and where.startswith(dotted + "."):
            return dotted
    return _module_from_path(path)


def _module_from_path(path: str) -> str:
    for root in _PYTHON_ROOTS:
        if path.startswith(root):
            path = path[len(root) :]
            break
    dotted = path.removesuffix(".py").replace("/", ".")
    return dotted.removesuffix(".__init__")
