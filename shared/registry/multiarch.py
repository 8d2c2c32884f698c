"""Multi-arch tags: an OCI image index over per-platform images that live in other repositories.

Kiln names arm64 images `...-arm`, a separate repository, but an index can reference only
manifests of its own repository (Distribution checks that they exist there). So each image is
first copied into the index's repository: its config and layers by cross-repository mount (no
bytes move), falling back to pull + push, then its manifest, PUT by digest with identical bytes
so the digest the scanner and deployer know stays valid.

Why an OCI index even over Docker schema 2 manifests: the OCI image spec allows an index to
reference any manifest media type, Docker 20.10+, containerd, podman, Distribution 2.8 and
Harbor all resolve it, and it is the format the architecture names. Each entry keeps its
child's real media type.
"""

from __future__ import annotations

import json
from typing import Protocol

from shared.registry import manifests as mf


class ManifestCopier(Protocol):
    """What an index push needs of a registry (RegistryClient is one). A protocol, not an import
    of shared.registry.client: the client calls this module, so the dependency goes one way."""

    def get_manifest(self, repo: str, ref: str) -> tuple[str, str, bytes]: ...
    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> str: ...
    def copy_blob(self, to_repo: str, digest: str, from_repo: str) -> None: ...


def copy_image(client: ManifestCopier, from_repo: str, digest: str, to_repo: str) -> tuple[str, int]:
    """Make image manifest `from_repo@digest` exist in `to_repo`; returns (media type, size)."""
    media_type, _, data = client.get_manifest(from_repo, digest)
    if media_type not in mf.IMAGE_MANIFESTS:
        raise ValueError(f"{from_repo}@{digest} is {media_type!r}, not a single-platform image manifest")
    if from_repo != to_repo:
        for descriptor in mf.blob_descriptors(json.loads(data)):
            client.copy_blob(to_repo, descriptor["digest"], from_repo)
        client.put_manifest(to_repo, digest, data, media_type)
    return media_type, len(data)


def push_index(client: ManifestCopier, repo: str, tag: str, platform_refs: list[tuple[str, str, str]]) -> str:
    """Push `repo:tag` as an OCI index over [(platform, repository, digest)]; returns its digest.

    Idempotent: the index bytes are canonical JSON of the entries in the order given, so the same
    images give the same index digest, and re-copying existing blobs and manifests is a no-op.
    """
    if not platform_refs:
        raise ValueError("an index needs at least one platform image")
    platforms = [platform for platform, _, _ in platform_refs]
    if len(set(platforms)) != len(platforms):
        raise ValueError(f"platforms repeat in {platforms}")
    entries = []
    for platform, from_repo, digest in platform_refs:
        mf.parse_platform(platform)
        media_type, size = copy_image(client, from_repo, digest, repo)
        entries.append((platform, media_type, digest, size))
    return client.put_manifest(repo, tag, mf.image_index(entries), mf.OCI_INDEX)
