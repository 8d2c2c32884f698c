"""Source tree discovery and the compiled output layout.

Input: a package directory, or a directory holding packages (and top-level modules). Output: the
same tree with every module replaced by its extension, data files copied, a `_COMPILED` marker
at each factory root, and a `.kiln-compile.json` manifest at the top (which also marks the
directory as ours, so a rebuild may replace it).

Symbolic links: a file that is a link is compiled or copied as the file it points to (the output
holds regular files only), provided the target is inside the same factory; a link leaving its
factory, or pointing at nothing, is refused naming its path (`UnsafeLink`): the tree may come from
anyone who can push, and `settings.txt -> /proc/self/environ` must never become a data file.
Linked directories are not descended into (as before): their files are not part of the output.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MARKER_NAME = "_COMPILED"
MANIFEST_NAME = ".kiln-compile.json"
_SKIPPED_DIRS = {"__pycache__", ".git", ".hg", ".svn", ".tox", ".venv", ".mypy_cache"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo", ".so", ".c", ".o", ".pyd"}


class UnsafeLink(ValueError):
    """A file of the tree is a symbolic link out of its factory, or to nothing."""


class OutputNotOurs(RuntimeError):
    """The output directory holds files a compile did not produce; we refuse to replace it."""


@dataclass(frozen=True)
class SourceModule:
    module: str
    factory: str
    path: Path
    relative: Path  # relative to the tree root


@dataclass(frozen=True)
class SourceTree:
    root: Path
    factories: list[str]
    modules: list[SourceModule]
    data_files: list[Path]  # relative to root


def discover(src: Path, factories: Iterable[str] | None = None) -> SourceTree:
    src = src.resolve()
    if not src.is_dir():
        raise FileNotFoundError(f"source directory {src} does not exist")
    if (src / "__init__.py").is_file():
        root, tops = src.parent, [src]
    else:
        root = src
        tops = sorted(p for p in src.iterdir() if not _skipped(p) and (p.is_dir() or p.suffix == ".py"))
    wanted = set(factories) if factories is not None else None
    modules: list[SourceModule] = []
    data: list[Path] = []
    chosen: list[str] = []
    for top in tops:
        factory = top.stem if top.is_file() else top.name
        if wanted is not None and factory not in wanted:
            continue
        chosen.append(factory)
        files = [top] if top.is_file() else _walk_files(top)
        boundary = root.resolve() if top.is_file() else top.resolve()
        for path in files:
            relative = path.relative_to(root)
            _refuse_unsafe_link(path, relative, boundary)
            module = _module_name(relative)
            if module is None:
                data.append(relative)
            else:
                modules.append(SourceModule(module, factory, path, relative))
    if wanted is not None and (missing := wanted - set(chosen)):
        raise FileNotFoundError(f"factories not found in {src}: {', '.join(sorted(missing))}")
    return SourceTree(root, chosen, modules, data)


def _refuse_unsafe_link(path: Path, relative: Path, boundary: Path) -> None:
    if not path.is_symlink():
        return
    target = path.resolve()
    if not target.is_relative_to(boundary):
        raise UnsafeLink(
            f"{relative} is a symbolic link to {os.readlink(path)}, outside its factory: refused "
            "(a link in a factory must point inside that factory)"
        )
    if not target.is_file():
        raise UnsafeLink(f"{relative} is a symbolic link to {os.readlink(path)}, which is not a file")


def _skipped(path: Path) -> bool:
    return path.name in _SKIPPED_DIRS or path.name.startswith(".") or path.suffix in _SKIPPED_SUFFIXES


def _walk_files(top: Path) -> list[Path]:
    found: list[Path] = []
    for directory, subdirs, files in os.walk(top):
        subdirs[:] = sorted(d for d in subdirs if not _skipped(Path(d)))
        found.extend(Path(directory, f) for f in sorted(files) if not _skipped(Path(f)))
    return found


def _module_name(relative: Path) -> str | None:
    """Dotted name of a compilable module, or None for data (including .py files that are not
    importable by name, e.g. `0001_initial.py` loaded by path: they stay as they are)."""
    if relative.suffix != ".py":
        return None
    parts = [*relative.parent.parts, relative.stem]
    if parts[-1] == "__init__":
        parts.pop()
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    return ".".join(parts)


def extension_relative(module: SourceModule, ext_suffix: str) -> Path:
    return module.relative.with_name(module.relative.stem + ext_suffix)


def staging_dir(out: Path) -> Path:
    # Unique per call: two builds (threads of one worker, or processes) may target one `out`.
    return out.with_name(f".{out.name}.kiln-staging-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def check_output_location(src: Path, out: Path) -> None:
    src, out = src.resolve(), out.resolve()
    if out == src or out.is_relative_to(src) or src.is_relative_to(out):
        raise OutputNotOurs(f"output {out} overlaps the source {src}; choose a separate directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
        raise OutputNotOurs(f"{out} is not empty and was not produced by a compile; refusing to replace it")


def copy_data(tree: SourceTree, stage: Path) -> None:
    # copyfile follows a link: discover() has checked every link stays inside its factory.
    for relative in tree.data_files:
        target = stage / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tree.root / relative, target)


def write_markers(tree: SourceTree, stage: Path, marker: dict) -> None:
    text = json.dumps(marker, indent=2, sort_keys=True) + "\n"
    for factory in tree.factories:
        factory_dir = stage / factory
        if factory_dir.is_dir():
            (factory_dir / MARKER_NAME).write_text(text)


def publish(stage: Path, out: Path, manifest: dict) -> None:
    """Replace `out` with the finished staging tree (a rename: readers never see half a tree)."""
    (stage / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    retired = out.with_name(f".{out.name}.kiln-retired-{uuid.uuid4().hex[:12]}")
    if out.exists():
        out.rename(retired)
    stage.rename(out)
    shutil.rmtree(retired, ignore_errors=True)
