"""The imager's narrow ports: build an image, prove it starts, fetch an artifact, talk to the registry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from shared.events.compile import Artifact

# Receives the builder's output lines as they come (the stage's live log; not yet redacted).
Progress = Callable[[str], None]


class BuildFailed(RuntimeError):
    """A build step failed; `log` holds the builder's output (not yet redacted)."""

    def __init__(self, message: str, log: list[str]):
        super().__init__(message)
        self.log = log


@dataclass(frozen=True)
class BuiltImage:
    image_id: str
    reference: str  # local name:tag the builder gave it
    size_bytes: int
    log: list[str] = field(default_factory=list)
    # The hash of what runs (layers, start-up config, architecture; not labels), or None when the
    # builder cannot tell: services/imager/proof_cache.py.
    content_key: str | None = None


@dataclass(frozen=True)
class PushResult:
    digest: str
    size_bytes: int


@dataclass(frozen=True)
class RegistryAuth:
    username: str | None
    password: str | None = field(default=None, repr=False)  # never in a traceback or log line

    def as_docker(self) -> dict[str, str] | None:
        if not self.username:
            return None
        return {"username": self.username, "password": self.password or ""}


class ImageBuilder(Protocol):
    def build(
        self,
        context_tar: bytes,
        reference: str,
        *,
        platform: str,
        dockerfile: str = "Dockerfile",
        progress: Progress | None = None,
    ) -> BuiltImage:
        """Build from a tar context and tag the result `reference` (repository:tag)."""

    def tag(self, image_id: str, reference: str) -> None: ...

    def push(self, reference: str, auth: RegistryAuth, *, progress: Progress | None = None) -> PushResult:
        """Push `reference`; raises RegistryAuthFailed when the registry refuses the credentials."""

    def remove(self, reference: str) -> None: ...


@dataclass(frozen=True)
class ProofResult:
    ok: bool
    reason: str = ""
    importer: str | None = None
    missing: str | None = None
    log: list[str] = field(default_factory=list)


class Prover(Protocol):
    def prove(
        self, reference: str, *, platform: str, port: int | None, health_path: str | None
    ) -> ProofResult: ...


class ArtifactFetcher(Protocol):
    def fetch(self, artifact: Artifact, dest: Path) -> Path:
        """Put the artifact's compiled tree under dest and return its root."""


class RegistryAuthFailed(RuntimeError):
    """The registry refused our credentials: retrying cannot fix it quickly, an operator must."""


@dataclass(frozen=True)
class ProofContainer:
    container_id: str
    name: str
    owner: str  # the worker id in its name (`kiln-proof-<id>-…`); "" for a proof from before names
    age_s: float


class EngineCleaner(Protocol):
    """Removes what image jobs left in the engine (Docker's image store, buildah's vfs store).
    Every method skips what the engine refuses (in use by a container, parent of another image)."""

    def remove_references(self, references: Sequence[str]) -> list[str]:
        """Untag `repository:tag`s; an image losing its last tag goes, with its untagged parents."""

    def remove_untagged(self, image_ids: Sequence[str]) -> list[str]:
        """Build-step images, if nothing names them (never a tagged image, e.g. the base)."""

    def older_references(self, repository: str, keep: int) -> list[str]:
        """The tags in `repository` of all but its `keep` newest images."""

    def proof_containers(self) -> list[ProofContainer]:
        """Containers the imager's prover started (never one that only inherited the label)."""

    def remove_container(self, container: ProofContainer) -> None: ...
