"""Compile results and the per-target, per-platform image requests the compiler fans out."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from shared.events.base import Event, Model
from shared.events.build import Platform
from shared.events.formats import (
    ArtifactReference,
    BaseImage,
    CommandWord,
    Commit,
    Digest,
    DockerfilePath,
    FactoryDir,
    HealthPath,
    HexHash,
    Name,
    OptionalDigest,
    Port,
    Repository,
    Tag,
    TierName,
)
from shared.platforms import arch_of  # `linux/arm64` -> `arm64`, re-exported for the events' users


class ModuleResult(Model):
    module: str
    factory: str
    platform: Platform
    status: Literal["ok", "cached", "error", "fallback"]
    duration_ms: int = 0
    error: str | None = None
    file: str | None = None
    line: int | None = None


class FactorySetTiming(Model):
    factory: str
    platform: Platform
    modules: int
    ok: int  # modules that compiled, cached ones included (ok + failed == modules)
    failed: int
    cached: int = 0  # of the ok ones, how many came from the cache
    duration_ms: int = 0


class Artifact(Model):
    """Where the compiled tree of one platform lives: an OCI artifact by digest, or a shared dir."""

    platform: Platform
    reference: ArtifactReference
    digest: OptionalDigest = ""

    @model_validator(mode="after")
    def _digest_is_the_references(self) -> Artifact:
        # The digest keys the imager's artifact cache; it must be the one the reference pins.
        if self.digest and not self.reference.endswith(f"@{self.digest}"):
            raise ValueError(f"digest {self.digest} is not the digest the reference pins ({self.reference})")
        return self


class DocumentReference(Model):
    """A document one stage hands to another (the trimmed app config), pinned by digest: the
    receiver fetches it from the artifact store and checks the digest (shared/document_artifacts.py)."""

    reference: ArtifactReference
    digest: Digest

    @model_validator(mode="after")
    def _digest_is_the_references(self) -> DocumentReference:
        if not self.reference.endswith(f"@{self.digest}"):
            raise ValueError(f"digest {self.digest} is not the digest the reference pins ({self.reference})")
        return self


class TargetPlatform(Model):
    target: Name
    platform: Platform


class CompileCompleted(Event):
    subject = "compile"
    predicate = "completed"

    ok: bool
    skipped: bool = False
    modules: tuple[ModuleResult, ...] = ()
    sets: tuple[FactorySetTiming, ...] = ()
    artifacts: tuple[Artifact, ...] = ()
    # Every image the deployer must see pushed and scanned before it deploys.
    targets: tuple[TargetPlatform, ...] = ()
    duration_ms: int = 0
    source_digest: str = Field("", description="hash of the compiled source tree, for --skip-compile reuse")
    # The package's trimmed app config (packages.<p>.app_config), for the deployer to mount; None
    # when the package has none (added in v1, additively).
    app_config: DocumentReference | None = None


class ImageRequested(Event):
    """The one request the compiler sends per target and platform (imperative: a job)."""

    subject = "image"
    predicate = "requested"

    target: Name
    platform: Platform
    artifact: Artifact | None = None
    base_image: BaseImage
    tier: TierName | None = None
    requirements_hash: HexHash | None = None
    factories: tuple[FactoryDir, ...] = ()
    command: tuple[CommandWord, ...] = ()
    port: Port | None = None
    health_path: HealthPath | None = None
    # Plain-Dockerfile mode: the Dockerfile's path inside the artifact (relative, no `..`).
    dockerfile: DockerfilePath | None = None
    repository: Repository
    tags: tuple[Tag, ...] = ("latest",)
    skip_push: bool = False
    # The source commit, for the image's revision label (added in v1, additively).
    commit: Commit = ""

    def routing_key(self) -> str:
        return f"{self.base_routing_key()}.{arch_of(self.platform)}"
