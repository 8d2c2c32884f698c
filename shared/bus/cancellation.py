"""Cancellation: `build.cancel.requested` reaches every process at once, whatever its backlog.

Each process keeps an exclusive queue bound to the cancel key (not its work queue, where the
request would wait behind the jobs it is meant to stop). Work checks `is_cancelled(build_id)`
at each stage boundary and stops there, reporting the stage as `cancelled`.
A process started after the request does not know it; the deployer's durable gate queue
does, and ends the build as cancelled in any case.
"""

from __future__ import annotations

import logging

from aio_pika.abc import AbstractIncomingMessage

from shared.bus.connection import Bus
from shared.bus.topology import CANCEL_KEY
from shared.events import InvalidEvent, decode

log = logging.getLogger("kiln.bus")


class CancelWatch:
    """Per build: the cancel's reason and the attempt it stopped. A replay (a newer attempt) of a
    cancelled build runs: the cancel ended the attempts up to the one it was sent for."""

    def __init__(self) -> None:
        self._cancelled: dict[str, tuple[str, int]] = {}

    async def start(self, bus: Bus) -> None:
        await bus.subscribe_transient("cancel", [CANCEL_KEY], self._on_message)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            envelope = decode(message.body)
        except InvalidEvent as exc:
            log.warning("ignoring an invalid cancel request: %s", exc)
            return
        reason = str(envelope.data.get("reason", ""))
        _, earlier = self._cancelled.get(envelope.buildid, ("", 0))
        self._cancelled[envelope.buildid] = (reason, max(earlier, envelope.attempt))

    def is_cancelled(self, build_id: str, attempt: int = 1) -> bool:
        """Is this attempt of the build cancelled? (Work passes its envelope's attempt.)"""
        cancelled = self._cancelled.get(build_id)
        return cancelled is not None and attempt <= cancelled[1]

    def reason(self, build_id: str) -> str:
        return self._cancelled.get(build_id, ("", 0))[0]
