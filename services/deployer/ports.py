"""The deployer's ports: where releases run (Substrate) and how health is asked (HttpProbe)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from services.deployer.scaffold import ScaffoldInputs
from services.deployer.topology import ServicePlan, Topology


@dataclass(frozen=True)
class Release:
    """What runs: one image reference per service, under an increasing revision number."""

    package: str
    revision: int
    images: Mapping[str, str]
    # The trimmed config it runs with (ConfigMap / mounted file), when the substrate can read it
    # back: a rollback restores it, so a release that changed only the config is undone too.
    config_json: str | None = None
    # The same for the app's own config: service -> the file it mounts (None: not read back).
    app_configs: Mapping[str, str] | None = None


class ReleaseFailed(Exception):
    """The substrate took the release but says it did not come up (e.g. `helm upgrade --wait`
    timed out): the release is unhealthy whatever the health checks answer, and is rolled back."""

    def __init__(self, message: str, detail: dict[str, Any] | None = None):
        super().__init__(message)
        self.detail = detail or {}


def restored_inputs(inputs: ScaffoldInputs, previous: Release) -> ScaffoldInputs:
    """What the previous release ran: its images and, when known, its config and app config (of
    the services that read one today)."""
    app_configs = dict(inputs.app_configs)
    if previous.app_configs is not None:
        app_configs.update({s: text for s, text in previous.app_configs.items() if s in app_configs})
    return dataclasses.replace(
        inputs,
        images={**inputs.images, **previous.images},
        config_json=previous.config_json if previous.config_json is not None else inputs.config_json,
        app_configs=app_configs,
    )


class Substrate(Protocol):
    name: str

    def current(self, topology: Topology) -> Release | None:
        """The release running now (the one a failed deploy rolls back to), or None."""

    def apply(self, inputs: ScaffoldInputs, revision: int) -> dict[str, Any]:
        """Make `inputs.images` run, service by service; returns detail for DeployCompleted
        (`revision` in it, if the substrate numbers releases itself). May raise ReleaseFailed."""

    def rollback(self, restored: ScaffoldInputs, previous: Release) -> dict[str, Any]:
        """Bring `previous` back (`restored` = restored_inputs(...)); returns detail."""

    def endpoint(self, topology: Topology, service: ServicePlan) -> str | None:
        """Base URL (`http://host:port`) the verifier can reach the service at."""

    def running(self, topology: Topology, service: ServicePlan) -> tuple[bool, str]:
        """(is it up, a short state description)."""

    def logs(self, topology: Topology, service: ServicePlan, lines: int = 50) -> list[str]:
        """The service's last log lines (redacted), for the verify event of a failed release."""


class HttpProbe(Protocol):
    def get(self, url: str, timeout_s: float) -> tuple[int, str]:
        """(status code, body); raises OSError when nothing answers."""


class DocsFailed(Exception):
    """The docs stage could not build or publish; the message names the cause and the fix."""


@dataclass(frozen=True)
class WikiPage:
    """One page as the wiki stores it: `path` below the locale, HTML content."""

    path: str
    title: str
    description: str
    content: str


@dataclass(frozen=True)
class Published:
    created: tuple[str, ...]
    updated: tuple[str, ...]


class WikiPublisher(Protocol):
    def publish(self, pages: list[WikiPage], *, locale: str, tags: list[str]) -> Published:
        """Create or update every page (by path); raises DocsFailed naming the page and the cause."""
