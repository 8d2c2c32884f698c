"""POST /webhook/{bitbucket-cloud,bitbucket-server,github}: signed pushes in, build.requested out.

Routing is on the event header, never the body. Status codes are the contract with the sender:
202 builds started (broker confirmed; `skipped` lists what did not start and why), 200 nothing to
start (reason: e.g. another repository or clone URL than the package's configured source), 400
malformed, 401 bad or missing signature, 413 too large, 429 every build it would start is over the
per-branch limit, 503 broker or database unavailable (the sender retries; nothing is lost).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import SecretStr

from services.gateway import metrics
from services.gateway.deps import GatewayDeps
from services.gateway.limits import within_branch_limit
from services.gateway.settings import secret_variable, unsigned_variable
from services.gateway.starter import BuildOrder, PublishFailed
from services.gateway.supersede import supersede_queued
from services.gateway.webhooks import bitbucket_cloud, bitbucket_server, github
from services.gateway.webhooks.changes import Ignored, MalformedPayload, Push
from services.gateway.webhooks.intake import BodyTooLarge, parse_json, read_body
from services.gateway.webhooks.routing import Route, plan_builds, shorten
from services.gateway.webhooks.signature import SignatureError, verify
from shared.events.build import Options, Source, Trigger

log = logging.getLogger("kiln.gateway.webhooks")
router = APIRouter(tags=["webhooks"])


@dataclass(frozen=True)
class Provider:
    kind: str
    event_header: str
    signature_header: str
    delivery_header: str
    parse: Callable[[str, Any, GatewayDeps], Push | Ignored]
    secret: Callable[[GatewayDeps], SecretStr | None]


PROVIDERS = {
    "bitbucket-cloud": Provider(
        "bitbucket-cloud",
        bitbucket_cloud.EVENT_HEADER,
        bitbucket_cloud.SIGNATURE_HEADER,
        bitbucket_cloud.DELIVERY_HEADER,
        lambda event, payload, _deps: bitbucket_cloud.parse(event, payload),
        lambda deps: deps.settings.bitbucket_cloud_secret,
    ),
    "bitbucket-server": Provider(
        "bitbucket-server",
        bitbucket_server.EVENT_HEADER,
        bitbucket_server.SIGNATURE_HEADER,
        bitbucket_server.DELIVERY_HEADER,
        lambda event, payload, _deps: bitbucket_server.parse(event, payload),
        lambda deps: deps.settings.bitbucket_server_secret,
    ),
    "github": Provider(
        "github",
        github.EVENT_HEADER,
        github.SIGNATURE_HEADER,
        github.DELIVERY_HEADER,
        lambda event, payload, _deps: github.parse(event, payload),
        lambda deps: deps.settings.github_secret,
    ),
}


def _reply(provider: str, outcome: str, status: int, **body: Any) -> Response:
    metrics.WEBHOOKS.labels(provider, outcome).inc()
    return Response(orjson.dumps({"status": outcome, **body}), status, media_type="application/json")


async def receive(provider: Provider, request: Request, deps: GatewayDeps) -> Response:
    started = time.perf_counter()
    try:
        body = await read_body(request, deps.settings.max_webhook_body)
    except BodyTooLarge as exc:
        return _reply(provider.kind, "rejected", 413, reason=str(exc))
    event = request.headers.get(provider.event_header, "").strip()
    if not event:
        return _reply(provider.kind, "rejected", 400, reason=f"header {provider.event_header} missing")
    secret = provider.secret(deps)
    if secret is None and not deps.settings.unsigned_allowed(provider.kind):
        # No key to check against: refusing is the only safe answer (an unsigned delivery is anyone's).
        reason = (
            f"{secret_variable(provider.kind)} is not set: deliveries are refused; set it, or "
            f"{unsigned_variable(provider.kind)}=true to accept unsigned deliveries"
        )
        return _reply(provider.kind, "unauthorized", 401, reason=reason)
    if secret is not None:
        try:
            verify(secret.get_secret_value(), body, request.headers.get(provider.signature_header))
        except SignatureError as exc:
            return _reply(provider.kind, "unauthorized", 401, reason=str(exc))
    try:
        parsed = provider.parse(event, parse_json(body), deps)
    except MalformedPayload as exc:
        return _reply(provider.kind, "rejected", 400, reason=str(exc))
    except Exception:  # a parser bug must still not answer 5xx to a sender's bad input
        log.exception("unreadable %s payload", provider.kind)
        return _reply(provider.kind, "rejected", 400, reason="payload could not be read")
    if isinstance(parsed, Ignored):
        return _reply(provider.kind, "ignored", 200, reason=parsed.reason)
    response = await _start(provider, parsed, request, deps)
    metrics.WEBHOOK_LATENCY.labels(provider.kind).observe(time.perf_counter() - started)
    return response


async def _start(provider: Provider, push: Push, request: Request, deps: GatewayDeps) -> Response:
    if deps.config is None:
        return _reply(provider.kind, "ignored", 200, reason="no pipeline config loaded (KILN_CONFIG_PATH)")
    route = Route(provider.kind, deps.settings.provider_urls(), deps.settings.max_refs_per_delivery)
    planned, skipped = plan_builds(deps.config, push, route)
    if not planned:
        return _reply(provider.kind, "ignored", 200, reason="; ".join(skipped) or "no ref changed")
    try:
        planned, over = await within_branch_limit(deps, planned)
    except Exception as exc:  # the database is down: retryable, the sender will redeliver
        log.exception("could not count builds in flight for %s", provider.kind)
        return _reply(provider.kind, "unavailable", 503, reason=f"try again later ({type(exc).__name__})")
    if not planned:
        return _reply(provider.kind, "too many builds", 429, reason="; ".join(over))
    delivery_id = request.headers.get(provider.delivery_header, "").strip()[:200] or None
    orders = [
        BuildOrder(
            package=p.package,
            # The package's configured source (operator config), whatever URL the payload named.
            source=Source(repo_url=p.source.url, ref=p.change.ref, commit=p.change.commit),
            options=Options(
                platforms=tuple(deps.config.packages[p.package].deployment.platforms), notify="raci"
            ),
            trigger=Trigger(kind=provider.kind, actor=push.actor[:255], delivery_id=delivery_id),  # type: ignore[arg-type]
            dedupe_key=f"ref:{push.repository.lower()}:{p.change.ref}:{p.change.commit}:{p.package}",
        )
        for p in planned
    ]
    delivery_key = f"delivery:{provider.kind}:{delivery_id}" if delivery_id else None
    try:
        result = await deps.starter.start(orders, delivery_key=delivery_key)
    except PublishFailed as exc:
        return _reply(provider.kind, "unavailable", 503, reason=str(exc))
    except Exception as exc:  # database or broker down: retryable, the sender will redeliver
        log.exception("could not start builds for %s", provider.kind)
        return _reply(provider.kind, "unavailable", 503, reason=f"try again later ({type(exc).__name__})")
    if not result.build_ids:
        return _reply(provider.kind, "duplicate", 200, reason="redelivery: builds already started")
    metrics.BUILDS_REQUESTED.labels(provider.kind).inc(len(result.build_ids))
    superseded: list[str] = list(result.superseded)  # running builds its concurrency group cancels
    if deps.settings.supersede_queued and deps.sessions is not None:
        for order in orders:
            superseded += await supersede_queued(deps, order.package, order.source.ref, result.build_ids)
    return _reply(
        provider.kind,
        "accepted",
        202,
        build_ids=result.build_ids,
        skipped=shorten(over + skipped),
        superseded=superseded,
        waiting=result.waiting,
    )


def _endpoint(name: str):
    provider = PROVIDERS[name]

    # No `Deps` dependency here: FastAPI's dependency solving is a measurable share of this, the
    # hottest path (bench/gateway); the deps are the same object either way.
    async def endpoint(request: Request) -> Response:
        return await receive(provider, request, request.app.state.deps)

    endpoint.__name__ = f"webhook_{name.replace('-', '_')}"
    endpoint.__doc__ = f"{name} push webhook (event header {provider.event_header})."
    return endpoint


for _name in PROVIDERS:
    router.add_api_route(f"/webhook/{_name}", _endpoint(_name), methods=["POST"], status_code=202)
