"""Compile results and the per-target, per-platform image requests the compiler fans out."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.events.base import Event, Model
from shared.events.build import Platform


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
    reference: str
    digest: str = ""


class TargetPlatform(Model):
    target: str
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


class ImageRequested(Event):
    """The one request the compiler sends per target and platform (imperative: a job)."""

    subject = "image"
    predicate = "requested"

    target: str
    platform: Platform
    artifact: Artifact | None = None
    base_image: str
    tier: str | None = None
    requirements_hash: str | None = None
    factories: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    port: int | None = None
    health_path: str | None = None
    dockerfile: str | None = None
    repository: str
    tags: tuple[str, ...] = ("latest",)
    skip_push: bool = False
    # The source commit, for the image's revision label (added in v1, additively).
    commit: str = ""

    def routing_key(self) -> str:
        return f"{self.base_routing_key()}.{arch_of(self.platform)}"


def arch_of(platform: str) -> str:
    """`linux/arm64` -> `arm64`: the suffix of per-architecture routing keys and queues."""
    return platform.split("/", 1)[1]
