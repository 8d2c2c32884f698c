"""What the compiler learns from a source tree: symbolic links that leave it, its own config.yaml,
credential files in it, the factory view to compile, and the digest that identifies the compiled
input (for --skip-compile reuse).

A pushed tree is untrusted: a link such as `settings.txt -> /proc/self/environ` or
`notes.txt -> /etc/kiln/keys/demo_private.pem` would make any step that reads the file read the
worker's secrets. Such links are refused before anything reads the tree."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

CREDENTIAL_NAME_PATTERNS = ("*.pem", "*.key", "id_rsa*", "*.p12", ".env")
_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
# Larger files are not read for a PEM block: keys are small, and reading every big blob is slow.
_CONTENT_SCAN_LIMIT = 1 << 20
# Not part of the build context: git's own objects and virtualenvs (whose CA bundles are *.pem).
_NOT_CONTEXT = {".git", "__pycache__", "node_modules"}
_DIGEST_SKIPPED_SUFFIXES = (".pyc", ".pyo", ".so", ".c", ".o")


class UnreadableConfig(ValueError):
    """The repository's config.yaml is there but is not a regular file Kiln may read."""


def find_escaping_links(root: Path) -> list[str]:
    """Every symbolic link under root (files and directories, `.git` aside) whose target, fully
    resolved, is outside root: `path -> target`, paths relative to root."""
    top = root.resolve()
    found: list[str] = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d != ".git")
        for name in sorted([*subdirs, *files]):
            path = Path(directory, name)
            if path.is_symlink() and not path.resolve().is_relative_to(top):
                found.append(f"{path.relative_to(root).as_posix()} -> {os.readlink(path)}")
    return found


def read_repository_config(root: Path, relative: str, max_bytes: int) -> bytes | None:
    """The bytes of the tree's own config file (at most max_bytes + 1 are read, so an oversized
    file is refused without being read whole), or None if the tree has none."""
    path = root / relative
    if not os.path.lexists(path):
        return None
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()) or not resolved.is_file():
        raise UnreadableConfig(f"{relative} is not a regular file inside the repository")
    with resolved.open("rb") as handle:
        return handle.read(max_bytes + 1)


def find_credential_files(root: Path) -> list[str]:
    """Every file under root that is, or holds, a key or a credential: paths relative to root.
    A link counts by its own name and by its target's name and content (a link leaving the tree
    counts too: nothing outside the tree is read to vouch for it)."""
    top = root.resolve()
    found: list[str] = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(
            d for d in subdirs if d not in _NOT_CONTEXT and not (Path(directory, d, "pyvenv.cfg")).is_file()
        )
        for name in sorted(files):
            path = Path(directory, name)
            if _named_like_a_credential(name):
                found.append(path.relative_to(root).as_posix())
                continue
            target = path.resolve() if path.is_symlink() else path
            if not target.is_relative_to(top) or _is_credential(target):
                found.append(path.relative_to(root).as_posix())
    return found


def _is_credential(path: Path) -> bool:
    return path.is_file() and (_named_like_a_credential(path.name) or _holds_private_key(path))


def _named_like_a_credential(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in CREDENTIAL_NAME_PATTERNS)


def _holds_private_key(path: Path) -> bool:
    try:
        if path.stat().st_size > _CONTENT_SCAN_LIMIT:
            return False
        return _PRIVATE_KEY.search(path.read_bytes()) is not None
    except OSError:
        return False


def factory_view(root: Path, factory_paths: Mapping[str, str], view: Path) -> dict[str, str]:
    """A directory of symlinks `<package dir name> -> root/<path>`, so factories anywhere in the
    repository compile as top-level packages. Returns factory name -> package dir name."""
    view.mkdir(parents=True)
    names: dict[str, str] = {}
    for factory, relative in factory_paths.items():
        target = (root / relative).resolve()
        if not target.is_relative_to(root.resolve()):
            raise ValueError(f"factory {factory}: path {relative} leaves the source tree")
        if not target.is_dir():
            raise ValueError(f"factory {factory}: {relative} is not a directory in the source")
        link = view / target.name
        if link.is_symlink():
            raise ValueError(f"factory {factory}: another factory is also named {target.name!r}")
        link.symlink_to(target, target_is_directory=True)
        names[factory] = target.name
    return names


def source_digest(view: Path, extra_files: Iterable[Path], settings: object) -> str:
    """sha256 over every file of the factory view, the extra files (requirements) and the
    compile-relevant settings (JSON). Paths are part of the hash: a rename is a change."""
    h = hashlib.sha256()
    for path in sorted(_files(view), key=lambda p: p.relative_to(view).as_posix()):
        _add(h, path.relative_to(view).as_posix(), path)
    for path in sorted(extra_files):
        _add(h, f"extra:{path.name}", path)
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return f"sha256:{h.hexdigest()}"


def _files(view: Path) -> list[Path]:
    found = []
    for top in view.iterdir():
        for directory, subdirs, files in os.walk(top):
            subdirs[:] = [d for d in subdirs if d not in _NOT_CONTEXT and not d.startswith(".")]
            found.extend(
                Path(directory, f)
                for f in files
                if not f.startswith(".") and not f.endswith(_DIGEST_SKIPPED_SUFFIXES)
            )
    return found


def _add(h: hashlib._Hash, name: str, path: Path) -> None:
    data = path.read_bytes()
    h.update(f"{name}\0{len(data)}\0".encode())
    h.update(data)
