"""Deployment and health verification results."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shared.events.base import Event, Model
from shared.events.formats import ImageReference, Name, OptionalDigest


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
