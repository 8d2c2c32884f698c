"""Deployment and health verification results, and the request to roll back to an earlier build."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shared.events.base import Event, Model
from shared.events.build import Options, Source, Trigger
from shared.events.formats import BuildRef, ImageReference, Name, OptionalDigest


class DeployedImage(Model):
    service: Name
    reference: ImageReference
    digest: OptionalDigest = ""


class DeployCompleted(Event):
    subject = "deploy"
    predicate = "completed"

    substrate: Literal["compose", "k8s", "supervisor"]
    release: str
    revision: int
    images: tuple[DeployedImage, ...] = ()
    rolled_back: bool = False
    detail: dict[str, Any] = Field(default_factory=dict)


class Check(Model):
    service: str
    url: str = ""
    healthy: bool
    status_code: int | None = None
    pass_rate: float | None = None
    failing_assertions: tuple[str, ...] = ()
    last_response: str = ""


class VerifyCompleted(Event):
    subject = "verify"
    predicate = "completed"

    checks: tuple[Check, ...] = ()
    pass_rate: float
    healthy: bool
    rolled_back: bool = False
    rollback_revision: int | None = None


class RollbackRequested(Event):
    """A new run (its own build id, under the envelope, and number) that redeploys what build
    `to_build_id` (number `to_number` of the same package) deployed: its image digests and its
    config, through the deployer's normal deploy + verify. Published by the gateway only
    (`POST /packages/{package}/rollback`); `source` and `version` are that build's, for the history."""

    subject = "rollback"
    predicate = "requested"

    package: Name
    build_number: int | None = None
    to_build_id: BuildRef
    to_number: int = Field(ge=1)
    version: Name | None = None
    source: Source = Field(default_factory=Source)
    options: Options = Field(default_factory=Options)
    trigger: Trigger = Field(default_factory=lambda: Trigger(kind="rollback"))
