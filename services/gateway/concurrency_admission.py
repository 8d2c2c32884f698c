"""What the starter publishes for each admission (concurrency.py decides it), and what it does when
the broker did not confirm: a held build is announced with `build.waiting` instead of
`build.requested`; a build that supersedes others sends their cancels once it is out."""

from __future__ import annotations

import logging

from anyio import to_thread

from services.gateway.concurrency import Admission, ConcurrencyStore, waiting_id
from services.gateway.concurrency_handlers import release_group
from services.gateway.ports import Publisher
from shared.events import BuildCancelRequested, BuildWaiting, Envelope

log = logging.getLogger("kiln.gateway.concurrency")


def announcement(envelope: Envelope, admission: Admission) -> Envelope:
    """The build.requested to publish, or, for a held build, its build.waiting."""
    if admission.start:
        return envelope
    on, number = admission.waiting_on or ("", None)
    event = BuildWaiting(**envelope.data, waiting_on=on, waiting_on_number=number, limit=admission.limit)
    return Envelope.new(
        event,
        source="gateway",
        build_id=envelope.buildid,
        package=envelope.package,
        event_id=waiting_id(envelope.buildid),
    )


async def settle_failures(
    store: ConcurrencyStore,
    publisher: Publisher,
    admissions: list[Admission],
    outcomes: list[BaseException | None],
) -> list[BaseException | None]:
    """Withdraw what was not published (the sender's retry starts it again). A held build a release
    already started stays started (its outcome becomes a success). Confirmed starts are marked."""
    settled: list[BaseException | None] = []
    for admission, outcome in zip(admissions, outcomes, strict=True):
        if outcome is None:
            settled.append(None)
            continue
        withdrawn, group = await to_thread.run_sync(
            lambda a=admission: store.withdraw(a.build_id, held=not a.start)
        )
        settled.append(outcome if withdrawn else None)
        if withdrawn and admission.start and group is not None:
            # Others may have been held behind it meanwhile; if the broker is still away, the
            # sweep releases them later.
            try:
                await release_group(group, store=store, publisher=publisher)
            except Exception:
                log.warning(
                    "could not release group of withdrawn build %s now; the sweep will", admission.build_id
                )
    started = [a.build_id for a, o in zip(admissions, settled, strict=True) if o is None and a.start]
    await to_thread.run_sync(store.started, started)
    return settled


async def supersede(publisher: Publisher, admissions: list[Admission]) -> list[str]:
    """Cancel the builds the new ones superseded (best effort: the stages stop them at their next
    boundary; a cancel the broker lost leaves the old build running to its end, outside the
    group's count)."""
    cancelled = []
    for admission in admissions:
        for build_id, package in admission.superseded:
            event = BuildCancelRequested(reason=admission.reason, actor="gateway")
            try:
                await publisher.publish(
                    Envelope.new(event, source="gateway", build_id=build_id, package=package)
                )
            except Exception:
                log.exception("could not cancel build %s (%s)", build_id, admission.reason)
                continue
            cancelled.append(build_id)
    return cancelled
