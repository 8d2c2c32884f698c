"""Artifacts that refer to an image (OCI 1.1): pushed with a `subject`, found again by digest.

An artifact manifest carries `subject` = the image's descriptor, so a registry with the referrers
API (`GET /v2/<repo>/referrers/<digest>`) lists it by itself. registry:2 (Distribution 2.8) has no
such API, so every push also maintains the tag-schema fallback of the OCI distribution spec: an
OCI index tagged `sha256-<hex>` whose `manifests` are the referrers' descriptors (with their
artifactType and annotations), which `oras discover` and cosign read when the API is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.registry import NotFound, RegistryClient, RegistryError
from shared.registry import manifests as mf

EMPTY_CONFIG_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def as_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def fallback_tag(digest: str) -> str:
    """`sha256:<hex>` -> `sha256-<hex>`: the referrers tag schema."""
    algorithm, _, hex_ = digest.partition(":")
    return f"{algorithm}-{hex_}"


def subject_descriptor(client: RegistryClient, repo: str, digest: str) -> Descriptor:
    media_type, checked, data = client.get_manifest(repo, digest)
    return Descriptor(media_type, checked, len(data))


def artifact_manifest(
    *,
    artifact_type: str,
    layers: list[tuple[str, bytes, dict[str, str]]],
    subject: Descriptor | None,
    annotations: dict[str, str] | None = None,
    config: tuple[str, bytes] = (EMPTY_CONFIG_MEDIA_TYPE, EMPTY_CONFIG),
) -> bytes:
    """The manifest bytes for `layers` [(mediaType, bytes, annotations)]; blobs are pushed apart."""
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mf.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": config[0], "digest": mf.sha256_digest(config[1]), "size": len(config[1])},
        "layers": [
            {
                "mediaType": media_type,
                "digest": mf.sha256_digest(data),
                "size": len(data),
                **({"annotations": notes} if notes else {}),
            }
            for media_type, data, notes in layers
        ],
    }
    if subject is not None:
        manifest["subject"] = subject.as_json()
    if annotations:
        manifest["annotations"] = annotations
    return mf.canonical_json(manifest)


def push_referrer(
    client: RegistryClient,
    repo: str,
    subject_digest: str,
    *,
    artifact_type: str,
    media_type: str,
    data: bytes,
    annotations: dict[str, str] | None = None,
) -> str:
    """Push one blob as an artifact referring to `subject_digest`; returns the artifact's digest."""
    subject = subject_descriptor(client, repo, subject_digest)
    client.push_blob(repo, EMPTY_CONFIG)
    client.push_blob(repo, data)
    manifest = artifact_manifest(
        artifact_type=artifact_type,
        layers=[(media_type, data, {})],
        subject=subject,
        annotations=annotations,
    )
    digest = client.put_manifest(repo, mf.sha256_digest(manifest), manifest, mf.OCI_MANIFEST)
    _add_to_fallback_index(
        client,
        repo,
        subject_digest,
        {
            "mediaType": mf.OCI_MANIFEST,
            "digest": digest,
            "size": len(manifest),
            "artifactType": artifact_type,
            **({"annotations": annotations} if annotations else {}),
        },
    )
    return digest


def _add_to_fallback_index(client: RegistryClient, repo: str, subject: str, entry: dict[str, Any]) -> None:
    tag = fallback_tag(subject)
    try:
        _, _, data = client.get_manifest(repo, tag)
        index = json.loads(data)
    except NotFound:
        index = {"schemaVersion": 2, "mediaType": mf.OCI_INDEX, "manifests": []}
    # Same artifact type replaced: a re-run (redelivery) leaves one SBOM, not two.
    kept = [m for m in index.get("manifests", []) if m.get("artifactType") != entry["artifactType"]]
    index["manifests"] = [*kept, entry]
    client.put_manifest(repo, tag, mf.canonical_json(index), mf.OCI_INDEX)


def referrers(client: RegistryClient, repo: str, digest: str, artifact_type: str | None = None) -> list[dict]:
    """Descriptors of the artifacts referring to `digest`: the referrers API, else the fallback tag."""
    found: list[dict] = []
    try:
        response = client.request("GET", f"/v2/{repo}/referrers/{digest}", headers={"Accept": mf.OCI_INDEX})
        found = response.json().get("manifests") or []
    except (NotFound, RegistryError):
        try:
            _, _, data = client.get_manifest(repo, fallback_tag(digest))
            found = json.loads(data).get("manifests") or []
        except NotFound:
            found = []
    return [m for m in found if artifact_type is None or m.get("artifactType") == artifact_type]


def pull_referrer(client: RegistryClient, repo: str, descriptor: dict, subject: str) -> tuple[dict, bytes]:
    """(manifest, first layer bytes) of a referrer, refusing one whose subject is another image."""
    _, _, data = client.get_manifest(repo, descriptor["digest"])
    manifest = json.loads(data)
    if (manifest.get("subject") or {}).get("digest") != subject:
        raise RegistryError(f"artifact {descriptor['digest']} in {repo} does not refer to {subject}")
    layer = manifest["layers"][0]
    return manifest, client.get_blob(repo, layer["digest"])
