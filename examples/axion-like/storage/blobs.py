"""Content-addressed blobs on disk: the name of a blob is its sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.root / digest
        if not target.exists():
            partial = target.with_suffix(".partial")
            partial.write_bytes(data)
            partial.replace(target)  # readers never see a half-written blob
        return digest

    def get(self, digest: str) -> bytes:
        data = (self.root / digest).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise ValueError(f"blob {digest} is corrupt")
        return data
