"""The deployer's ports: where releases run (Substrate) and how health is asked (HttpProbe)."""

from __future__ import annotations

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


class Substrate(Protocol):
    name: str

    def current(self, topology: Topology) -> Release | None:
        """The release running now (the one a failed deploy rolls back to), or None."""

    def apply(self, inputs: ScaffoldInputs, revision: int) -> dict[str, Any]:
        """Make `inputs.images` run, service by service; returns detail for DeployCompleted."""

    def endpoint(self, topology: Topology, service: ServicePlan) -> str | None:
        """Base URL (`http://host:port`) the verifier can reach the service at."""

    def running(self, topology: Topology, service: ServicePlan) -> tuple[bool, str]:
        """(is it up, a short state description)."""

    def logs(self, topology: Topology, service: ServicePlan, lines: int = 50) -> list[str]: ...


class HttpProbe(Protocol):
    def get(self, url: str, timeout_s: float) -> tuple[int, str]:
        """(status code, body); raises OSError when nothing answers."""
