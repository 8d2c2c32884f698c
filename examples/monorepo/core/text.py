"""Small text helpers shared by the factories."""

from __future__ import annotations

import hashlib
import re

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(text: str) -> str:
    """'Hello, World!' -> 'hello-world'."""
    return _NOT_SLUG.sub("-", text.lower()).strip("-")


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def word_count(text: str) -> int:
    return len(text.split())
