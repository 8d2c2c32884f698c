"""The gateway's narrow ports: where build requests go, and where redelivery keys are kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shared.events import Envelope


class Publisher(Protocol):
    async def publish(self, envelope: Envelope) -> None:
        """Return only once the broker confirmed the event (Bus.publish does)."""


@dataclass(frozen=True)
class ClaimRequest:
    """One delivery's claim: its delivery key, and per build order a redelivery key and a package."""

    delivery_key: str | None
    keys: tuple[str | None, ...]
    packages: tuple[str, ...]


@dataclass(frozen=True)
class Claim:
    """Per order: is it new (start it), and its build number if so. All False for a redelivery."""

    fresh: tuple[bool, ...]
    numbers: tuple[int | None, ...]


class DeliveryLedger(Protocol):
    """Batch methods: each call is one transaction over every request given."""

    def claim(self, requests: list[ClaimRequest]) -> list[Claim]:
        """Reserve keys as pending (a seen key is not new; a stale pending one is taken over) and
        take build numbers for the new orders."""

    def confirm(self, keys: list[str]) -> None:
        """The builds of these keys were confirmed by the broker."""

    def release(self, keys: list[str]) -> None:
        """Forget keys whose build could not be published, so the sender's retry starts it."""
