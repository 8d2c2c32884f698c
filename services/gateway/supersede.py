"""Superseding: a newer push to a branch cancels that branch's builds still queued (opt-in,
KILN_SUPERSEDE_QUEUED). Best effort: the new build is already accepted; a failure here is logged."""

from __future__ import annotations

import logging

from services.gateway.api.db import in_session
from services.gateway.deps import GatewayDeps
from shared.events import BuildCancelRequested, Envelope
from shared.history.read_model import queued_builds

log = logging.getLogger("kiln.gateway")


async def supersede_queued(deps: GatewayDeps, package: str, ref: str, newer: list[str]) -> list[str]:
    try:
        stale = await in_session(deps, queued_builds, package, ref, newer)
        for build_id in stale:
            event = BuildCancelRequested(reason=f"superseded by build {newer[0]}", actor="gateway")
            await deps.publisher.publish(
                Envelope.new(event, source="gateway", build_id=build_id, package=package)
            )
        return stale
    except Exception:  # the new build stands either way; a queued old one just runs
        log.exception("could not supersede queued builds of %s %s", package, ref)
        return []
