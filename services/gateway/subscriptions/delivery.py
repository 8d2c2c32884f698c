"""Delivering events to HTTP subscribers: signed, checked, bounded, outcome recorded.

Consumes `topology.GATEWAY_SUBSCRIPTIONS` (bound to `#`, bounded by x-max-length). Each matching
subscriber gets a POST of the CloudEvent (structured JSON, credentials masked) with
`X-Kiln-Signature: sha256=<hmac of the body>`, `X-Kiln-Event: <routing key>` and
`X-Kiln-Delivery: <event id>` (receivers dedupe on it: after a gateway crash an event may be
delivered twice).

What one subscriber can cost is bounded: before each event its URL is resolved and checked again
(targets.py) and the request goes to the checked address; each attempt has one deadline for
the whole exchange (a receiver that drips its answer is cut off); redirects are not followed;
only connection failures, 5xx, 408 and 429 are retried; after `breaker.failures` failed events
in a row it is paused (store.Breaker). What it is told is coarse: a connection that failed,
was refused or timed out is one class, "unreachable", so the API is no port scanner.
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
from services.gateway.subscriptions import store, targets
from services.gateway.webhooks.signature import sign
from shared.bus import EventContext
from shared.events import CATALOGUE, Envelope
from shared.events.envelope import CONTENT_TYPE
from shared.redaction import redact_json

log = logging.getLogger("kiln.gateway.subscriptions")
RETRY_DELAYS_S = (1.0, 4.0)
TIMEOUT_S = 5.0
# Every event passes through here: the subscription list is cached this long (and dropped at once
# when this process changes it), so the common case of "nobody subscribed" costs no query.
CACHE_TTL_S = 2.0
UNREACHABLE = "could not deliver: no connection or no answer in time"


class SubscriptionDeliverer:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        http: httpx.AsyncClient,
        *,
        retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
        timeout_s: float = TIMEOUT_S,
        allow: targets.AllowList | None = None,
        breaker: store.Breaker | None = None,
        resolver: targets.Resolver = targets.resolve,
    ):
        self._sessions = sessions
        self._http = http
        self._delays = tuple(retry_delays_s)
        self._timeout_s = timeout_s
        self.allow = allow or targets.AllowList()
        self._breaker = breaker or store.Breaker()
        self.resolver = resolver
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
            body = redact_json(envelope.to_json())
            await asyncio.gather(*(self._deliver_one(s, envelope.id, key, body) for s in matching))

    async def _deliver_one(
        self, subscription: tuple[int, str, str, str], event_id: str, key: str, body: bytes
    ) -> None:
        subscription_id, url, _filter, secret = subscription
        try:
            target = await targets.check(url, self.allow, self.resolver)
        except targets.TargetRefused as exc:
            status, error = "refused", f"not delivered: {exc}"
        else:
            headers = {
                "Host": target.host_header,
                "Content-Type": CONTENT_TYPE,
                "User-Agent": "kiln-gateway",
                "X-Kiln-Signature": sign(secret, body),
                "X-Kiln-Event": key,
                "X-Kiln-Delivery": event_id,
            }
            status, error = await self._attempts(target, body, headers)
        metrics.SUBSCRIPTION_DELIVERIES.labels("ok" if error is None else "failed").inc()
        if error:
            log.warning("subscription %s gave up on %s: %s", subscription_id, event_id, error)
        paused = await to_thread.run_sync(
            self._in_session, store.record, subscription_id, event_id, status, error, self._breaker
        )
        if paused:
            log.warning("subscription %s paused after repeated failures (circuit breaker)", subscription_id)
            self.invalidate()

    async def _attempts(
        self, target: targets.Target, body: bytes, headers: dict[str, str]
    ) -> tuple[str, str | None]:
        status, error = "unreachable", UNREACHABLE
        for attempt, delay in enumerate((0.0, *self._delays)):
            await asyncio.sleep(delay)
            status, error, retry = await self._attempt(target, body, headers)
            if error is None or not retry:
                break
            error = f"{error} (attempt {attempt + 1})"
        return status, error

    async def _attempt(
        self, target: targets.Target, body: bytes, headers: dict[str, str]
    ) -> tuple[str, str | None, bool]:
        """(status, error or None, worth retrying). The answer's body is never read."""
        extensions = {"sni_hostname": target.host} if target.connect_url.startswith("https:") else {}
        try:
            async with asyncio.timeout(self._timeout_s):
                request = self._http.build_request(
                    "POST", target.connect_url, content=body, headers=headers, extensions=extensions
                )
                response = await self._http.send(request, stream=True)
                await response.aclose()
        except (httpx.HTTPError, TimeoutError, OSError):
            return "unreachable", UNREACHABLE, True
        code = response.status_code
        if 200 <= code < 300:
            return str(code), None, False
        if 300 <= code < 400:
            return str(code), f"HTTP {code}: redirects are not followed", False
        return str(code), f"HTTP {code}", code >= 500 or code in (408, 429)

    def _in_session(self, work, *args):
        with self._sessions() as session:
            return work(session, *args)

    def handlers(self):
        """The handler table: every event type of the catalogue goes to the same delivery."""

        async def on_any_event(_event: object, ctx: EventContext) -> None:
            await self.deliver(ctx.envelope)

        return dict.fromkeys(CATALOGUE, on_any_event)
