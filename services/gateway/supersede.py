"""Superseding: a newer push to a branch cancels that branch's builds still queued (opt-in,
KILN_SUPERSEDE_QUEUED). Best effort: the new build is already accepted; a failure here is logged."""

from __future__ import annotations

import logging

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from services.gateway.api.db import in_session
from services.gateway.deps import GatewayDeps
from shared.db.models import BuildRun
from shared.events import BuildCancelRequested, Envelope
from shared.platforms import branch_of

log = logging.getLogger("kiln.gateway")


def queued_builds(session: Session, package: str, ref: str, newer: list[str]) -> list[str]:
    branch = branch_of(ref)
    rows = session.execute(
        select(BuildRun.build_id).where(
            BuildRun.package == package,
            BuildRun.status == "queued",
            or_(BuildRun.ref == ref, BuildRun.ref == branch),
            BuildRun.build_id.not_in(newer),
        )
    )
    return list(rows.scalars())


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
