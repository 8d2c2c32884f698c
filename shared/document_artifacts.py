"""One small document handed from one stage to another by reference: the trimmed app config the
compiler writes at stage config and the deployer mounts (issue #16 item 4). Events carry the
reference, never the document.

    stored = push_document(data, store="127.0.0.1:5000/kiln", package="demo", build=build_id,
                           client=registry_client)
    stored.reference  # "127.0.0.1:5000/kiln/kiln-artifacts/demo@sha256:…" (in compile.completed)
    pull_document(stored.reference, client=registry_client)  # the same bytes, digest-checked

The stores of shared/artifacts.py, with the same reference shape `<where>@sha256:<hex>`:
- registry: an OCI artifact of artifactType `application/vnd.kiln.app-config.v1+json`, the empty
  config and one layer (the document), tagged `{project}/kiln-artifacts/{package}:{build}-app-config`.
  Digest = the manifest's; the layer's digest is checked on every read too.
- shared directory: `<dir>/<package>/sha256-<hex>.json` plus `<build>-app-config` holding its
  digest. Digest = the file's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from shared.artifacts import (
    ARTIFACTS_REPOSITORY,
    EMPTY_CONFIG,
    EMPTY_CONFIG_MEDIA_TYPE,
    FILE_SCHEME,
    StoredArtifact,
)
from shared.naming import validate_tag
from shared.registry import DigestMismatch, RegistryClient
from shared.registry import manifests as mf

APP_CONFIG_TYPE = "application/vnd.kiln.app-config.v1+json"
APP_CONFIG_TAG_SUFFIX = "app-config"
# Far above a trimmed app config (its source is capped at 256 KiB); a reader never takes more.
MAX_DOCUMENT_BYTES = 1 << 20


def document_manifest(layer: bytes, *, package: str, build: str) -> bytes:
    descriptor = {
        "mediaType": APP_CONFIG_TYPE,
        "digest": mf.sha256_digest(layer),
        "size": len(layer),
        "annotations": {"org.opencontainers.image.title": f"{package}-app-config.json"},
    }
    config = {"mediaType": EMPTY_CONFIG_MEDIA_TYPE, "digest": mf.sha256_digest(EMPTY_CONFIG), "size": 2}
    return mf.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": mf.OCI_MANIFEST,
            "artifactType": APP_CONFIG_TYPE,
            "config": config,
            "layers": [descriptor],
            "annotations": {"dev.kiln.package": package, "dev.kiln.build": build},
        }
    )


def push_document(
    data: bytes, *, store: str, package: str, build: str, client: RegistryClient | None = None
) -> StoredArtifact:
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"the document is {len(data)} bytes; at most {MAX_DOCUMENT_BYTES} are stored")
    tag = validate_tag(f"{build}-{APP_CONFIG_TAG_SUFFIX}")
    if store.startswith(FILE_SCHEME):
        return _store_in_directory(Path(store.removeprefix(FILE_SCHEME)) / package, tag, data)
    if client is None:
        raise ValueError(f"store {store!r} is a registry: pass the RegistryClient for it")
    host, _, project = store.partition("/")
    if host != client.host or not project:
        raise ValueError(f"store {store!r} must be '{client.host}/<project>' (the client's registry)")
    repo = f"{project}/{ARTIFACTS_REPOSITORY}/{package}"
    client.push_blob(repo, EMPTY_CONFIG)
    client.push_blob(repo, data)
    digest = client.put_manifest(
        repo, tag, document_manifest(data, package=package, build=build), mf.OCI_MANIFEST
    )
    return StoredArtifact(reference=f"{client.host}/{repo}@{digest}", digest=digest)


def _store_in_directory(folder: Path, tag: str, data: bytes) -> StoredArtifact:
    digest = mf.sha256_digest(data)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest.replace(':', '-')}.json"
    if not path.exists():  # write-then-rename: a reader never sees half a document
        partial = path.with_suffix(f".partial-{os.getpid()}")
        partial.write_bytes(data)
        partial.replace(path)
    (folder / tag).write_text(digest + "\n")
    return StoredArtifact(reference=f"{FILE_SCHEME}{folder}@{digest}", digest=digest)


def pull_document(reference: str, *, client: RegistryClient | None = None) -> bytes:
    """The document `<where>@sha256:<hex>` names, every digest verified (DigestMismatch)."""
    where, at, digest = reference.rpartition("@")
    if not at or not digest.startswith("sha256:"):
        raise ValueError(f"document reference {reference!r} must end in @sha256:<hex> (pinned by digest)")
    if where.startswith(FILE_SCHEME):
        path = Path(where.removeprefix(FILE_SCHEME)) / f"{digest.replace(':', '-')}.json"
        with path.open("rb") as handle:
            data = handle.read(MAX_DOCUMENT_BYTES + 1)
        if mf.sha256_digest(data) != digest:
            raise DigestMismatch(f"{path} hashes to {mf.sha256_digest(data)}, not {digest}")
        return data
    if client is None:
        raise ValueError(f"document {reference!r} is in a registry: pass the RegistryClient for it")
    host, _, repo = where.partition("/")
    if host != client.host:
        raise ValueError(f"document {reference!r} is on {host}, the client talks to {client.host}")
    _, _, manifest = client.get_manifest(repo, digest)  # raises DigestMismatch itself
    document = json.loads(manifest)
    layers = document.get("layers") or []
    if document.get("artifactType") != APP_CONFIG_TYPE or len(layers) != 1:
        raise ValueError(f"{reference} is not a Kiln app config ({document.get('artifactType')!r})")
    if int(layers[0].get("size", 0)) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"{reference}: its document is larger than {MAX_DOCUMENT_BYTES} bytes")
    return client.get_blob(repo, layers[0]["digest"])  # re-hashed by the client
