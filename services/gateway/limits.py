"""Builds in flight per package and branch (KILN_MAX_BUILDS_PER_BRANCH): one pusher cannot queue
an unbounded number of builds of one branch. A build beyond the limit is not started (429 when
nothing of the request could start); the sender pushes again once a build has finished.

In flight = the reporter's run history says queued or running. That projection follows
build.requested within milliseconds, so a burst of deliveries faster than that can pass the limit
by the few builds still in transit: the limit bounds a flood, it is not an exact semaphore.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from services.gateway.api.db import in_session
from services.gateway.deps import GatewayDeps
from shared.db.models import BuildRun
from shared.platforms import branch_of

IN_FLIGHT = ("queued", "running")


class BranchBuild(Protocol):
    @property
    def package(self) -> str: ...

    @property
    def ref(self) -> str: ...


T = TypeVar("T", bound=BranchBuild)


def builds_in_flight(session: Session, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """{(package, ref): builds queued or running}; the run history stores `refs/heads/x` or `x`."""
    counts: dict[tuple[str, str], int] = {}
    for package, ref in set(keys):
        branch = branch_of(ref)
        counts[(package, ref)] = session.execute(
            select(func.count())
            .select_from(BuildRun)
            .where(
                BuildRun.package == package,
                BuildRun.status.in_(IN_FLIGHT),
                or_(BuildRun.ref == ref, BuildRun.ref == branch),
            )
        ).scalar_one()
    return counts


async def within_branch_limit(deps: GatewayDeps, wanted: list[T]) -> tuple[list[T], list[str]]:
    """(builds that may start, reasons for those that may not)."""
    if deps.sessions is None or not wanted:  # no run history to count (unit tests with fakes)
        return wanted, []
    limit = deps.settings.max_builds_per_branch
    counts = await in_session(deps, builds_in_flight, [(w.package, w.ref) for w in wanted])
    kept = [w for w in wanted if counts[(w.package, w.ref)] < limit]
    refused = [
        f"{w.package} {w.ref}: {counts[(w.package, w.ref)]} builds already queued or running, the limit "
        f"is {limit} (KILN_MAX_BUILDS_PER_BRANCH); push again when one has finished, or cancel one"
        for w in wanted
        if counts[(w.package, w.ref)] >= limit
    ]
    return kept, refused
