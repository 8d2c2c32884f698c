"""The reporter's handlers. History is the batching ingestor (`batching.py`); these are the rest."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from services.reporter.cdevents import InvalidCDEvent, routing_key, translate, validate
from services.reporter.cdevents.cloudevents import STRUCTURED_CONTENT_TYPE, as_cloudevent
from services.reporter.notify import Notifier
from services.reporter.ports import CDEventPublisher
from shared.bus import EventContext, PermanentError
from shared.bus import topology as t
from shared.bus.connection import Bus
from shared.events import BuildFinished, BuildRequested, Event

log = logging.getLogger("kiln.reporter")


def on_build_requested(event: BuildRequested, ctx: EventContext, *, notifier: Notifier) -> None:
    notifier.build_started(ctx.envelope, event.source.repo_url, event.source.commit, event.trigger.kind)


def on_build_finished(event: BuildFinished, ctx: EventContext, *, notifier: Notifier) -> None:
    notifier.build_finished(ctx.envelope)


async def on_event_for_cdevents(
    event: Event, ctx: EventContext, *, publisher: CDEventPublisher, build_url: Callable[[str], str]
) -> None:
    """Translate, validate ALL, then publish: an invalid translation is a bug and nothing leaves."""
    cdevents = translate(ctx.envelope, build_url=build_url(ctx.build_id))
    for cdevent in cdevents:
        try:
            validate(cdevent)
        except InvalidCDEvent as exc:
            log.error("invalid CDEvent translation of %s %s: %s", ctx.envelope.type, ctx.envelope.id, exc)
            raise PermanentError(f"invalid CDEvent translation: {exc}") from None
    for cdevent in cdevents:
        await publisher.publish(routing_key(cdevent), cdevent)


class BusCDEventPublisher:
    """CDEvents on `kiln.cdevents` as CloudEvents (structured mode, cdevents/cloudevents.py),
    routing key `<subject>.<predicate>` (e.g. `taskrun.started`)."""

    def __init__(self, bus: Bus):
        self._bus = bus

    async def publish(self, routing_key: str, cdevent: dict[str, Any]) -> None:
        await self._bus.publish_raw(
            t.CDEVENTS_EXCHANGE,
            routing_key,
            json.dumps(as_cloudevent(cdevent)).encode(),
            content_type=STRUCTURED_CONTENT_TYPE,
            message_id=cdevent["context"]["id"],
            type=cdevent["context"]["type"],
        )
