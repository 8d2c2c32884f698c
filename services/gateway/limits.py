"""Builds in flight per package and branch (KILN_MAX_BUILDS_PER_BRANCH): one pusher cannot queue
an unbounded number of builds of one branch. A build beyond the limit is not started (429 when
nothing of the request could start); the sender pushes again once a build has finished.

In flight = the reporter's run history says queued or running. That projection follows
build.requested within milliseconds, so a burst of deliveries faster than that can pass the limit
by the few builds still in transit: the limit bounds a flood, it is not an exact semaphore. The
concurrency groups' table (concurrency.py) counts the same builds exactly once they are admitted,
so the higher of the two counts: pushes in a row cannot pass it, only concurrent ones in transit.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from anyio import to_thread

from services.gateway.api.db import in_session
from services.gateway.deps import GatewayDeps
from shared.history.read_model import builds_in_flight


class BranchBuild(Protocol):
    @property
    def package(self) -> str: ...

    @property
    def ref(self) -> str: ...


T = TypeVar("T", bound=BranchBuild)


async def within_branch_limit(deps: GatewayDeps, wanted: list[T]) -> tuple[list[T], list[str]]:
    """(builds that may start, reasons for those that may not)."""
    if deps.sessions is None or not wanted:  # no run history to count (unit tests with fakes)
        return wanted, []
    limit = deps.settings.max_builds_per_branch
    keys = [(w.package, w.ref) for w in wanted]
    counts = await in_session(deps, builds_in_flight, keys)
    if deps.groups is not None:  # the concurrency groups' own count is exact: a flood is bounded
        exact = await to_thread.run_sync(deps.groups.in_flight, keys)
        counts = {key: max(counts[key], exact[key]) for key in counts}
    kept = [w for w in wanted if counts[(w.package, w.ref)] < limit]
    refused = [
        f"{w.package} {w.ref}: {counts[(w.package, w.ref)]} builds already queued or running, the limit "
        f"is {limit} (KILN_MAX_BUILDS_PER_BRANCH); push again when one has finished, or cancel one"
        for w in wanted
        if counts[(w.package, w.ref)] >= limit
    ]
    return kept, refused
