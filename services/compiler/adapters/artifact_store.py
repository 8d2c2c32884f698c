"""ArtifactStore on shared.artifacts: an OCI artifact in the registry, or a shared directory."""

from __future__ import annotations

from pathlib import Path

from shared.artifacts import FILE_SCHEME, push_artifact
from shared.document_artifacts import push_document
from shared.events.compile import Artifact, DocumentReference
from shared.registry import NotFound, RegistryClient


class SharedArtifactStore:
    def __init__(self, store: str, client: RegistryClient | None = None):
        self._store = store
        self._client = client

    @property
    def location(self) -> str:
        return self._store

    def push(self, tree: Path, *, package: str, build: str, platform: str, source_digest: str) -> Artifact:
        stored = push_artifact(
            tree,
            store=self._store,
            package=package,
            build=build,
            platform=platform,
            source_digest=source_digest,
            client=self._client,
        )
        return Artifact(platform=platform, reference=stored.reference, digest=stored.digest)

    def push_document(self, data: bytes, *, package: str, build: str) -> DocumentReference:
        stored = push_document(data, store=self._store, package=package, build=build, client=self._client)
        return DocumentReference(reference=stored.reference, digest=stored.digest)

    def exists(self, artifact: Artifact) -> bool:
        where, _, digest = artifact.reference.rpartition("@")
        if where.startswith(FILE_SCHEME):
            return (Path(where.removeprefix(FILE_SCHEME)) / f"{digest.replace(':', '-')}.tar.gz").is_file()
        if self._client is None:
            return False
        _, _, repo = where.partition("/")
        try:
            self._client.manifest_digest(repo, digest)
        except NotFound:
            return False
        return True
