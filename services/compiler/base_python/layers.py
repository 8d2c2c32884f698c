"""The few files Kiln needs from an image, read from its layer tarballs without running it.

Layers apply in order (OCI image spec, "Applying changesets"): a later layer's entry replaces an
earlier one, `.wh.<name>` deletes `<name>` and what lies below it in the layers beneath, and
`.wh..wh..opq` empties its directory of what the layers beneath put there. Only the entries a
`want` function asks for are kept (their bytes spooled to disk); every symbolic link is kept as
a name, so a path can be resolved the way the image itself would resolve it: inside the image,
never on the host. Not modelled: a file in a later layer that replaces a whole directory of an
earlier one without a whiteout (container tools write the whiteouts).
"""

from __future__ import annotations

import posixpath
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_MAX_LINK_HOPS = 40


class Keep(Enum):
    SKIP = 0
    PRESENCE = 1  # that the file is there (an interpreter), not its bytes
    CONTENT = 2  # its bytes too (a header, _sysconfigdata)


class UnreadableLayer(ValueError):
    """A layer that is not a tar stream Python can read (zstd, truncated)."""


@dataclass(frozen=True)
class _Entry:
    layer: int
    link: str | None = None  # a symbolic link's target
    blob: Path | None = None  # a kept file's bytes


def normalize(name: str) -> str:
    """`./usr/bin/python3` and `/usr/bin/python3` -> `usr/bin/python3` ("" is the root)."""
    path = posixpath.normpath("/" + name).lstrip("/")
    return "" if path == "." else path


class ImageFiles:
    """The kept entries of an image's merged file system, built one layer at a time."""

    def __init__(self, spool: Path, want: Callable[[str], Keep]):
        self._spool = spool
        self._want = want
        self._entries: dict[str, _Entry] = {}
        self._layers = 0
        self._blobs = 0

    def apply_layer(self, stream: IO[bytes]) -> None:
        layer = self._layers
        self._layers += 1
        try:
            with tarfile.open(fileobj=stream, mode="r|*") as tar:
                for member in tar:
                    self._apply(layer, member, tar)
        except (tarfile.TarError, EOFError, OSError) as problem:
            raise UnreadableLayer(f"layer {layer + 1} is not a readable tar stream: {problem}") from None

    def _apply(self, layer: int, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        path = normalize(member.name)
        directory, name = posixpath.split(path)
        if name == OPAQUE:
            self._delete_below(directory, layer, keep_directory=True)
            return
        if name.startswith(WHITEOUT):
            self._delete_below(posixpath.join(directory, name[len(WHITEOUT) :]), layer)
            return
        if member.issym():
            self._entries[path] = _Entry(layer, link=member.linkname)
            return
        keep = self._want(path)
        if keep is Keep.SKIP or not (member.isfile() or member.islnk()):
            return
        if member.islnk():  # a hard link: the same bytes as the entry it names, if we kept it
            source = self._entries.get(normalize(member.linkname))
            self._entries[path] = _Entry(layer, blob=source.blob if source else None)
            return
        blob = None
        if keep is Keep.CONTENT:
            self._blobs += 1
            blob = self._spool / str(self._blobs)
            with tar.extractfile(member) as data, blob.open("wb") as out:  # type: ignore[union-attr]
                shutil.copyfileobj(data, out)
        self._entries[path] = _Entry(layer, blob=blob)

    def _delete_below(self, path: str, layer: int, *, keep_directory: bool = False) -> None:
        prefix = path + "/" if path else ""
        doomed = [
            name
            for name, entry in self._entries.items()
            if entry.layer < layer and (name.startswith(prefix) or (name == path and not keep_directory))
        ]
        for name in doomed:
            del self._entries[name]

    # -- reading the merged file system -------------------------------------------------------

    def resolve(self, path: str) -> str | None:
        """`path` with every symbolic link on the way followed inside the image; None for a loop."""
        pending = [part for part in normalize(path).split("/") if part]
        resolved = ""
        hops = 0
        while pending:
            candidate = posixpath.join(resolved, pending.pop(0))
            entry = self._entries.get(candidate)
            if entry is None or entry.link is None:
                resolved = candidate
                continue
            hops += 1
            if hops > _MAX_LINK_HOPS:
                return None
            base = "" if entry.link.startswith("/") else resolved
            target = normalize(posixpath.join("/" + base, entry.link))
            pending = [part for part in target.split("/") if part] + pending
            resolved = ""
        return resolved

    def is_file(self, path: str) -> bool:
        entry = self._entries.get(path)
        return entry is not None and entry.link is None

    def blob(self, path: str) -> Path | None:
        """Where the bytes of a kept file (after links) are spooled; None when it has none."""
        resolved = self.resolve(path)
        entry = self._entries.get(resolved) if resolved is not None else None
        return entry.blob if entry is not None else None

    def read(self, path: str) -> bytes | None:
        blob = self.blob(path)
        return blob.read_bytes() if blob is not None else None

    def files_under(self, directory: str) -> list[str]:
        """The kept files below `directory` (resolved first), relative to it, sorted."""
        root = self.resolve(directory)
        if root is None:
            return []
        prefix = root + "/"
        below = [name for name in self._entries if name.startswith(prefix)]
        return sorted(name[len(prefix) :] for name in below if self.blob(name) is not None)

    def names(self, pattern: Callable[[str], bool]) -> list[str]:
        """Every kept path (files and links) `pattern` accepts, sorted."""
        return sorted(name for name in self._entries if pattern(name))
