"""Delivering events to HTTP subscribers: signed, retried with back-off, outcome recorded.

Consumes `topology.GATEWAY_SUBSCRIPTIONS` (bound to `#`). Each matching subscriber gets a POST of
the CloudEvent (structured JSON) with `X-Kiln-Signature: sha256=<hmac of the body>`,
`X-Kiln-Event: <routing key>` and `X-Kiln-Delivery: <event id>` (receivers dedupe on it: after a
gateway crash an event may be delivered twice). A subscriber that keeps failing costs at most
the back-off schedule per event; its failure is recorded, never retried forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import httpx
from anyio import to_thread
from sqlalchemy.orm import Session, sessionmaker

from services.gateway import metrics
from services.gateway.live import topic_matches
from services.gateway.subscriptions import store
from services.gateway.webhooks.signature import sign
from shared.bus import EventContext
from shared.events import CATALOGUE, Envelope
from shared.events.envelope import CONTENT_TYPE

log = logging.getLogger("kiln.gateway.subscriptions")
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)
# Every event passes through here: the subscription list is cached this long (and dropped at once
# when this process changes it), so the common case of "nobody subscribed" costs no query.
CACHE_TTL_S = 2.0


class SubscriptionDeliverer:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        http: httpx.AsyncClient,
        *,
        retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
    ):
        self._sessions = sessions
        self._http = http
        self._delays = tuple(retry_delays_s)
        self._cache: tuple[float, list[tuple[int, str, str, str]]] | None = None

    def invalidate(self) -> None:
        self._cache = None

    async def _active(self) -> list[tuple[int, str, str, str]]:
        now = time.monotonic()
        if self._cache is None or now - self._cache[0] > CACHE_TTL_S:
            self._cache = (now, await to_thread.run_sync(self._in_session, store.active))
        return self._cache[1]

    async def deliver(self, envelope: Envelope) -> None:
        key = envelope.routing_key()
        subscriptions = await self._active()
        matching = [s for s in subscriptions if topic_matches(s[2], key)]
        if matching:
            body = envelope.to_json()
            await asyncio.gather(*(self._deliver_one(s, envelope.id, key, body) for s in matching))

    async def _deliver_one(
        self, subscription: tuple[int, str, str, str], event_id: str, key: str, body: bytes
    ):
        subscription_id, url, _filter, secret = subscription
        headers = {
            "Content-Type": CONTENT_TYPE,
            "X-Kiln-Signature": sign(secret, body),
            "X-Kiln-Event": key,
            "X-Kiln-Delivery": event_id,
        }
        error: str | None = "not attempted"
        status = "error"
        for attempt, delay in enumerate((0.0, *self._delays)):
            await asyncio.sleep(delay)
            try:
                response = await self._http.post(url, content=body, headers=headers)
                status = str(response.status_code)
                error = (
                    None if response.is_success else f"HTTP {response.status_code} (attempt {attempt + 1})"
                )
            except httpx.HTTPError as exc:
                status, error = "unreachable", f"{type(exc).__name__}: {exc} (attempt {attempt + 1})"
            if error is None:
                break
        metrics.SUBSCRIPTION_DELIVERIES.labels("ok" if error is None else "failed").inc()
        if error:
            log.warning("subscription %s gave up on %s: %s", subscription_id, event_id, error)
        await to_thread.run_sync(self._in_session, store.record, subscription_id, event_id, status, error)

    def _in_session(self, work, *args):
        with self._sessions() as session:
            return work(session, *args)

    def handlers(self):
        """The handler table: every event type of the catalogue goes to the same delivery."""

        async def on_any_event(_event: object, ctx: EventContext) -> None:
            await self.deliver(ctx.envelope)

        return dict.fromkeys(CATALOGUE, on_any_event)
