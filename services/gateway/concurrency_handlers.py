"""The bus side of concurrency groups (the store is concurrency.py).

Consumed from `kiln.gateway.concurrency` (shared.bus.topology): every build.finished frees its
build's slot and starts the group's next held builds; a build.cancel.requested of a held build
means it is never released (the deployer's gate ends it, as every cancelled build). Both handlers
are idempotent: a redelivery finds the slot already gone, or republishes events under the same
ids (consumers' guards see them once).

The sweep covers what a lost message or a crash between commit and publish would leave: slots
of builds the run history already shows finished are freed, and releases not confirmed within
`republish_after_s` (KILN_PENDING_TAKEOVER_S) are published again.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

from anyio import to_thread

from services.gateway.concurrency import ConcurrencyStore, requested_id
from services.gateway.ports import Publisher
from shared.bus.context import EventContext
from shared.events import BuildCancelRequested, BuildFinished, BuildRequested, Envelope
from shared.history.read_model import finished_builds

log = logging.getLogger("kiln.gateway.concurrency")


async def release_group(group: str, *, store: ConcurrencyStore, publisher: Publisher) -> list[str]:
    """Publish build.requested for every build of the group whose turn came; confirmed ones run."""
    releases = await to_thread.run_sync(store.release, group)
    started = []
    for release in releases:
        event = BuildRequested.model_validate(release.request)
        await publisher.publish(
            Envelope.new(
                event,
                source="gateway",
                build_id=release.build_id,
                package=release.package,
                event_id=requested_id(release.build_id),
            )
        )
        started.append(release.build_id)
        log.info("build %s (#%s) released from its concurrency group", release.build_id, event.build_number)
    await to_thread.run_sync(store.started, started)
    return started


async def on_build_finished(
    event: BuildFinished, ctx: EventContext, *, store: ConcurrencyStore, publisher: Publisher
) -> None:
    group = await to_thread.run_sync(store.finish, ctx.build_id)
    if group is not None:
        await release_group(group, store=store, publisher=publisher)


async def on_cancel_requested(
    event: BuildCancelRequested, ctx: EventContext, *, store: ConcurrencyStore, publisher: Publisher
) -> None:
    """A held build is never released and frees nothing; its build.finished (cancelled, with the
    reason) comes from the deployer's gate, which ends every cancelled build. A running one is the
    stages' to stop at their next boundary; its build.finished frees its slot."""
    if await to_thread.run_sync(store.cancel_waiting, ctx.build_id, event.reason):
        log.info("held build %s cancelled before it started: %s", ctx.build_id, event.reason)


def handlers(store: ConcurrencyStore, publisher: Publisher) -> dict[type, Any]:
    return {
        BuildFinished: partial(on_build_finished, store=store, publisher=publisher),
        BuildCancelRequested: partial(on_cancel_requested, store=store, publisher=publisher),
    }


async def sweep(store: ConcurrencyStore, publisher: Publisher, sessions: Any) -> int:
    """One pass; returns how many builds it started."""
    open_ids = await to_thread.run_sync(store.open_builds)
    if open_ids:
        for build_id in await to_thread.run_sync(_ended, sessions, open_ids):
            log.warning(
                "build %s ended without its build.finished reaching the gateway: slot freed", build_id
            )
            await to_thread.run_sync(store.finish, build_id)
    started = 0
    for group in await to_thread.run_sync(store.groups_to_check):
        started += len(await release_group(group, store=store, publisher=publisher))
    return started


def _ended(sessions: Any, build_ids: list[str]) -> set[str]:
    with sessions() as session:
        return finished_builds(session, build_ids)


async def run_sweeps(
    store: ConcurrencyStore, publisher: Publisher, sessions: Any, *, interval_s: float
) -> None:
    while True:
        try:
            await sweep(store, publisher, sessions)
        except Exception:  # a database or broker hiccup: the next pass tries again
            log.exception("concurrency sweep failed; retrying in %.0f s", interval_s)
        await asyncio.sleep(interval_s)
