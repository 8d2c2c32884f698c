"""The gateway's narrow ports: where build requests go, and where redelivery keys are kept."""

from __future__ import annotations

from typing import Protocol

from shared.events import Envelope


class Publisher(Protocol):
    async def publish(self, envelope: Envelope) -> None:
        """Return only once the broker confirmed the event (Bus.publish does)."""


class DeliveryLedger(Protocol):
    """Batch methods: each call is one transaction over all the given keys or packages."""

    def reserve(self, keys: list[str]) -> list[bool]:
        """Mark each key pending; True where it is new (or a stale pending one), False if seen."""

    def confirm(self, keys: list[str]) -> None:
        """The builds of these keys were confirmed by the broker."""

    def release(self, keys: list[str]) -> None:
        """Forget keys whose build could not be published, so the sender's retry starts it."""

    def build_numbers(self, packages: list[str]) -> list[int]:
        """The next number of each package, in order (a package may repeat)."""
