"""The system layer's directory: package trees merged into it as dpkg would lay them on the image's
root, confined to the layer directory.

dpkg follows directory symlinks on the root it installs into: `/lib/x` of a package lands in
`/usr/lib/x` on a merged-/usr base (bookworm's `/lib -> usr/lib`), and a file below a link another
package ships lands where that link points. The layer must do the same, or its `lib/` directory
would replace the base's `/lib` link when the layer is copied over the base. So every path is
resolved here through the links of the layer itself and the base image's top-level links (read
from the base), always inside the layer directory: an absolute link means the image's root, never
the worker host's, and nothing is ever written through a link onto the host.

Each package is unpacked alone into an empty directory first (deb_layer.py), so its own links
cannot redirect its own files; then merged here. Set-user-ID and set-group-ID bits are dropped,
devices and pipes are not taken, and documentation (Debian's slim set: doc except copyright
files, man, info, groff, lintian) is left out.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Mapping
from pathlib import Path

MAX_LINK_HOPS = 40
DROPPED = ("usr/share/doc/", "usr/share/man/", "usr/share/info/", "usr/share/groff/", "usr/share/lintian/")
SETID_BITS = stat.S_ISUID | stat.S_ISGID


class LayerPathError(ValueError):
    """A package path that cannot be placed in the layer (a link loop)."""


class LayerTree:
    def __init__(self, root: Path, base_links: Mapping[str, str]):
        self.root = root
        # The base image's top-level links, e.g. {"lib": "usr/lib"}: what /lib is on the image.
        self.base_links = dict(base_links)
        self.notes: list[str] = []  # what the job log should say (setuid dropped, devices skipped)

    def resolve(self, image_path: str, *, follow_last: bool = False) -> str:
        """Where `image_path` lands on the image, as a path relative to the layer (no leading /),
        following links of the layer and of the base's top level (the last component only with
        `follow_last`)."""
        pending = [p for p in image_path.split("/") if p not in ("", ".")]
        done: list[str] = []
        hops = 0
        while pending:
            part = pending.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            candidate = [*done, part]
            relative = "/".join(candidate)
            target = None
            if pending or follow_last:
                here = self.root / relative
                if here.is_symlink():
                    target = os.readlink(here)
                elif not os.path.lexists(here) and len(candidate) == 1 and part in self.base_links:
                    target = self.base_links[part]
            if target is None:
                done = candidate
                continue
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise LayerPathError(f"{image_path}: more than {MAX_LINK_HOPS} links deep (a loop?)")
            pending = [p for p in target.split("/") if p not in ("", ".")] + pending
            if target.startswith("/"):
                done = []
        return "/".join(done)

    def merge(self, tree: Path) -> None:
        """Move one unpacked package tree into the layer."""
        for current, dirs, files in os.walk(tree):
            dirs.sort()
            relative_dir = Path(current).relative_to(tree).as_posix()
            for name in sorted(dirs) + sorted(files):
                source = Path(current) / name
                image_path = name if relative_dir == "." else f"{relative_dir}/{name}"
                self._place(source, image_path)

    def _place(self, source: Path, image_path: str) -> None:
        info = source.lstat()
        if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)):
            self.notes.append(f"skipped {image_path}: not a file, directory or link")
            return
        # A directory where a link is (the layer's, or the base's /lib -> usr/lib) is the link's
        # target: dpkg keeps the link and puts the children below it. A file or link replaces.
        landing = self.resolve(image_path, follow_last=stat.S_ISDIR(info.st_mode))
        destination = self.root / landing
        if not landing or _dropped(landing, info):
            return
        if stat.S_ISDIR(info.st_mode):
            if destination.is_symlink() or destination.is_dir():
                return
            make_dirs(destination.parent)
            destination.mkdir()
            os.chmod(destination, stat.S_IMODE(info.st_mode) & ~SETID_BITS)
            return
        if destination.is_dir() and not destination.is_symlink():
            self.notes.append(f"skipped {image_path}: a directory is there already")
            return
        make_dirs(destination.parent)
        if stat.S_ISREG(info.st_mode) and info.st_mode & SETID_BITS:
            os.chmod(source, stat.S_IMODE(info.st_mode) & ~SETID_BITS)
            self.notes.append(f"dropped the set-user/group-ID bit of /{landing}")
        if os.path.lexists(destination):
            destination.unlink()
        os.rename(source, destination)  # same filesystem: hard links between files stay links

    def write(self, image_path: str, data: bytes) -> None:
        """A file Kiln writes into the layer (status.d entries)."""
        destination = self.root / self.resolve(image_path)
        make_dirs(destination.parent)
        destination.write_bytes(data)
        os.chmod(destination, 0o644)

    def loader_paths(self, default: tuple[str, ...]) -> list[str]:
        """Library directories the layer's ld.so.conf.d files add beyond the loader's defaults:
        no ldconfig runs, so only programs whose RUNPATH names them find those libraries."""
        conf = self.root / self.resolve("etc/ld.so.conf.d")
        if not conf.is_dir() or conf.is_symlink():
            return []
        found = []
        for path in sorted(conf.glob("*.conf")):
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                entry = line.split("#", 1)[0].strip()
                if entry and not entry.startswith("include") and posixpath.normpath(entry) not in default:
                    found.append(f"{entry} (/etc/ld.so.conf.d/{path.name})")
        return found


def make_dirs(path: Path) -> None:
    """mkdir -p with 0755 whatever the worker's umask: the image's user must traverse them."""
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir()
        os.chmod(directory, 0o755)


def _dropped(landing: str, info: os.stat_result) -> bool:
    for prefix in DROPPED:
        if (landing + "/").startswith(prefix) and landing + "/" != prefix:
            keep = prefix == "usr/share/doc/" and (
                stat.S_ISDIR(info.st_mode) or (stat.S_ISREG(info.st_mode) and landing.endswith("/copyright"))
            )
            return not keep
    return False
