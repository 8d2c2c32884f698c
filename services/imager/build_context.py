"""The build context: a tar with fixed timestamps and owners, so identical inputs give identical layers.

Layout: `Dockerfile`, `sys/` (the system layer: Debian packages' files, copied to `/`), `tier/`
(the tier's site-packages), `app/<factory>/` (only the factories the service keeps). Source `.py`
of compiled modules, config files, keys and credentials are left out here, whatever the artifact
holds: an image layer is forever.

Symbolic links are never followed: a link is added as a link (its target name only, no content),
and a link whose target leaves the directory being added is refused (`UnsafeLink`): the
compiler's artifacts hold none, so one is a forged or hostile artifact.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

# 2000-01-01: any fixed instant works; a fixed one makes layer digests independent of when and
# where a worker prepared the files (same content -> same layer digest on every worker).
FIXED_MTIME = 946684800

SECRETS = (
    "*.pem",
    "*.key",
    "*.crt",
    "*.p12",
    "id_rsa*",
    ".env",
    "*.env",
    "config.yaml",
    "config.yml",
    ".netrc",
    ".pypirc",
    ".git",
)
# Compile leftovers: meaningless in a compiled service image.
NEVER_IN_A_LAYER = (
    *SECRETS,
    "*.c",
    "*.o",
    "*.pyc",
    "__pycache__",
    ".kiln-compile.json",
)
COMPILE_MANIFEST = ".kiln-compile.json"


class MissingFactory(ValueError):
    """The artifact lacks a factory the service is configured to keep."""


class UnsafeLink(MissingFactory):
    """A link in the context points outside it. A MissingFactory for its callers: either way the
    artifact cannot be built from, and the job fails with the reason (image.failed)."""


def compiled_sources_to_drop(artifact_root: Path) -> set[str]:
    """Dotted modules the compiler compiled: their `.py`, if any is left, never ships.
    Modules it kept as source (fallbacks) are not in this set, so they do ship."""
    manifest = artifact_root / COMPILE_MANIFEST
    if not manifest.is_file():
        return set()
    modules = json.loads(manifest.read_text(encoding="utf-8")).get("modules", {})
    return {name for name, status in modules.items() if status == "compiled"}


def _excluded(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def _walk(root: Path, patterns: tuple[str, ...] = NEVER_IN_A_LAYER) -> Iterator[Path]:
    """Every file and directory below root, sorted, pruning excluded names (deterministic order)."""
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if _excluded(entry.name, patterns):
            continue
        yield entry
        if entry.is_dir() and not entry.is_symlink():
            yield from _walk(entry, patterns)


def _module_of(relative: Path) -> str:
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _refuse_escaping_link(path: Path, top: Path) -> None:
    if path.is_symlink() and not path.resolve().is_relative_to(top.resolve()):
        raise UnsafeLink(
            f"{path.relative_to(top).as_posix()} is a symbolic link to {os.readlink(path)}, outside the "
            "build context: refused"
        )


def _add(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
    # gettarinfo lstat()s: a link becomes a link entry, its target is never read.
    info = tar.gettarinfo(str(path), arcname=arcname)
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if info.isfile():
        info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
        with path.open("rb") as handle:
            tar.addfile(info, handle)
    else:
        if info.isdir():
            info.mode = 0o755
        tar.addfile(info)


def _add_tree(tar: tarfile.TarFile, root: Path, prefix: str, drop_modules: set[str], top: Path) -> None:
    if root != top:
        _refuse_escaping_link(root, top)
    _add(tar, root, prefix)
    for path in _walk(root):
        _refuse_escaping_link(path, top)
        if path.suffix == ".py" and _module_of(path.relative_to(top)) in drop_modules:
            continue
        _add(tar, path, f"{prefix}/{path.relative_to(root).as_posix()}")


def _add_rootfs(tar: tarfile.TarFile, root: Path, prefix: str) -> None:
    """The system layer as it will lie on `/`: every file (Debian's, not the repository's: no
    secret filter), links as links whatever they point at (an absolute target is the image's
    root), modes kept but never set-user/group-ID, all root's, the fixed mtime."""
    entries = [root, *sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix())]
    for path in entries:
        relative = path.relative_to(root).as_posix()
        info = tar.gettarinfo(str(path), arcname=prefix if relative == "." else f"{prefix}/{relative}")
        if not (info.isfile() or info.isdir() or info.issym() or info.islnk()):
            continue
        info.mtime, info.uid, info.gid, info.uname, info.gname = FIXED_MTIME, 0, 0, "root", "root"
        info.mode = 0o755 if path == root else info.mode & 0o1777
        if info.isfile():
            with path.open("rb") as handle:
                tar.addfile(info, handle)
        else:
            tar.addfile(info)


def service_context(
    dockerfile: str,
    artifact_root: Path,
    factories: tuple[str, ...],
    tier_dir: Path | None,
    launcher: Path,
    system_dir: Path | None = None,
) -> bytes:
    """The whole context as tar bytes (the docker SDK takes it as `fileobj`, custom_context)."""
    drop = compiled_sources_to_drop(artifact_root)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size, info.mtime, info.mode = len(data), FIXED_MTIME, 0o644
        tar.addfile(info, io.BytesIO(data))
        _add(tar, launcher.parent, "launch")
        _add(tar, launcher, f"launch/{launcher.name}")
        if system_dir is not None:
            _add_rootfs(tar, system_dir, "sys")
        if tier_dir is not None:
            _add_tree(tar, tier_dir, "tier", set(), tier_dir)
        for factory in sorted(factories):
            source = artifact_root / factory
            if not source.is_dir():
                raise MissingFactory(f"factory {factory!r} is not in the artifact at {artifact_root}")
            _add_tree(tar, source, f"app/{factory}", drop, artifact_root)
    return buffer.getvalue()


def directory_context(root: Path) -> bytes:
    """Plain Dockerfile mode: the source directory as-is (still without keys and credentials)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _walk(root, SECRETS):
            _refuse_escaping_link(path, root)
            _add(tar, path, path.relative_to(root).as_posix())
    return buffer.getvalue()
