"""The skip-compile index: (artifact store, source digest, platform) -> the artifact pushed last.

A JSON file in the compile cache directory, so it lives as long as the cache, is shared by
every worker of the host, and survives restarts. Written to a temp file and renamed: a reader
never sees half of it; two workers writing at once lose at most one entry, which only costs a
recompile.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from shared.events.compile import Artifact

INDEX_NAME = "artifact-index.json"
# A bound, so the file stays small however many builds a host has seen.
MAX_ENTRIES = 500


class ArtifactIndex:
    def __init__(self, directory: Path):
        self.path = directory / INDEX_NAME

    def find(self, store: str, source_digest: str, platforms: list[str]) -> list[Artifact] | None:
        """The artifacts of every platform, or None if any platform has none."""
        entries = self._read().get(self._key(store, source_digest), {})
        if not all(p in entries for p in platforms):
            return None
        return [Artifact(platform=p, **entries[p]) for p in platforms]

    def record(self, store: str, source_digest: str, artifacts: list[Artifact]) -> None:
        index = self._read()
        key = self._key(store, source_digest)
        entry = index.pop(key, {})
        entry.update({a.platform: {"reference": a.reference, "digest": a.digest} for a in artifacts})
        index[key] = entry  # re-inserted last: the oldest entries are the ones trimmed
        while len(index) > MAX_ENTRIES:
            index.pop(next(iter(index)))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f"{INDEX_NAME}.{os.getpid()}.{threading.get_ident()}.partial")
        partial.write_text(json.dumps(index, indent=1), encoding="utf-8")
        partial.replace(self.path)

    @staticmethod
    def _key(store: str, source_digest: str) -> str:
        return f"{store}|{source_digest}"

    def _read(self) -> dict[str, dict[str, dict[str, str]]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}
