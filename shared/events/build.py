"""Build lifecycle events: requested, stage progress, cancellation, finished."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shared.events.base import Event, Model
from shared.events.formats import Commit, Name, StageName
from shared.platforms import PLATFORM_NAMES, PlatformName
from shared.stages import STAGE_NAMES

Platform = PlatformName
StageStatus = Literal["started", "succeeded", "failed", "skipped", "cancelled"]
BuildStatus = Literal["succeeded", "failed", "cancelled"]

# Every stage, in pipeline order (declared in shared.stages); the reporter and dashboard sort by it.
STAGES = STAGE_NAMES


class Source(Model):
    repo_url: str = ""
    ref: str = ""
    commit: Commit = ""
    # A local checkout to build from instead of cloning (development and tests).
    path: str | None = None


class Options(Model):
    skip_compile: bool = False
    skip_push: bool = False
    skip_deploy: bool = False
    platforms: tuple[Platform, ...] = PLATFORM_NAMES
    # An email address, "raci" (the package's active RACI roles), or None for no report.
    notify: str | None = None


class Trigger(Model):
    # "rollback": a run that redeploys an earlier build (`rollback.requested`, shared.events.deploy).
    kind: Literal["bitbucket-cloud", "bitbucket-server", "github", "api", "cli", "replay", "rollback"] = "api"
    actor: str = ""
    delivery_id: str | None = None


class BuildRequested(Event):
    subject = "build"
    predicate = "requested"

    package: Name
    build_number: int | None = None
    version: Name | None = None
    source: Source = Field(default_factory=Source)
    options: Options = Field(default_factory=Options)
    trigger: Trigger = Field(default_factory=Trigger)


class BuildWaiting(Event):
    """The gateway accepted and numbered the build but holds it back: its package and branch
    already run as many builds as their concurrency group allows (services/gateway/concurrency.py).
    Its `build.requested` follows, under the same build id, when a slot frees; a cancel before
    that ends it without it ever starting."""

    subject = "build"
    predicate = "waiting"

    package: Name
    build_number: int | None = None
    version: Name | None = None
    source: Source = Field(default_factory=Source)
    options: Options = Field(default_factory=Options)
    trigger: Trigger = Field(default_factory=Trigger)
    # The group's build it waits behind (the oldest running one), and the group's limit.
    waiting_on: str = ""
    waiting_on_number: int | None = None
    limit: int = 1


class StageStarted(Event):
    subject = "stage"
    predicate = "started"

    stage: StageName
    platform: Platform | None = None
    target: Name | None = None


class StageFinished(Event):
    subject = "stage"
    predicate = "finished"

    stage: StageName
    status: StageStatus
    duration_ms: int = 0
    platform: Platform | None = None
    target: Name | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    log_tail: tuple[str, ...] = ()


class BuildCancelRequested(Event):
    subject = "build.cancel"
    predicate = "requested"

    reason: str = ""
    actor: str = ""


class BuildFinished(Event):
    subject = "build"
    predicate = "finished"

    status: BuildStatus
    duration_ms: int = 0
    failed_stage: str | None = None
    error: str | None = None
    log_tail: tuple[str, ...] = ()
