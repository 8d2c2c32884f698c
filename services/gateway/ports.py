"""The gateway's narrow ports: where build requests go, and where redelivery keys are kept."""

from __future__ import annotations

from typing import Protocol

from shared.events import Envelope


class Publisher(Protocol):
    async def publish(self, envelope: Envelope) -> None:
        """Return only once the broker confirmed the event (Bus.publish does)."""


class DeliveryLedger(Protocol):
    def reserve(self, keys: list[str]) -> list[bool]:
        """Mark each key pending; True where it is new (or a stale pending one), False if seen."""

    def confirm(self, keys: list[str], build_ids: list[str]) -> None: ...

    def release(self, keys: list[str]) -> None:
        """Forget keys whose build could not be published, so the sender's retry starts it."""

    def build_numbers(self, packages: list[str]) -> list[int]: ...
