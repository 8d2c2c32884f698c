"""Manifest media types and the little we read from manifests: descriptors, sizes, platforms."""

from __future__ import annotations

import hashlib
import json
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
# What GET/HEAD of a manifest accepts: without an Accept header Distribution answers with a
# converted schema 1 manifest whose digest differs from the pushed one.
ACCEPT = ", ".join((*IMAGE_MANIFESTS, *INDEXES))


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(document: dict[str, Any]) -> bytes:
    """Stable bytes for a manifest we build: same document, same digest."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def blob_descriptors(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The config and layer descriptors of an image manifest (what must exist beside it)."""
    config = manifest.get("config")
    return ([config] if config else []) + list(manifest.get("layers", []))


def image_bytes(manifest: dict[str, Any]) -> int:
    return sum(int(d.get("size", 0)) for d in blob_descriptors(manifest))


def parse_platform(platform: str) -> dict[str, str]:
    """`linux/arm64[/v8]` → {"os": "linux", "architecture": "arm64", "variant": "v8"}."""
    parts = platform.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"platform {platform!r} is not os/architecture[/variant]")
    result = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        result["variant"] = parts[2]
    return result


def image_index(entries: list[tuple[str, str, str, int]]) -> bytes:
    """An OCI image index over (platform, media type, digest, size) entries."""
    manifests = [
        {"mediaType": media_type, "digest": digest, "size": size, "platform": parse_platform(platform)}
        for platform, media_type, digest, size in entries
    ]
    return canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
