"""Server-Sent Events: a build's events and live log lines as they happen, only its log lines, or
all events.

`/builds/{id}/events/stream`: each event is `id: <event id>`, `event: <routing key>`, `data: <the
CloudEvent JSON>` (stored history first, then live); each live log batch is `event: log`, `data:
<the LogBatch JSON>` (`?logs=false` leaves them out). Ends after the build's `build.finished`.
`/builds/{id}/logs/stream`: only `event: log` batches (the recent ones first), then `event: end`
with the build's status. For a build already finished, `event: stored` with the stored log lines
(the tails the stages reported, as `GET /builds/{id}/logs`), then `event: end`.
`/events/stream`: every event matching a filter, until the client leaves.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from services.gateway.api.db import in_session
from services.gateway.auth import ReadAccess
from services.gateway.deps import Deps
from services.gateway.live import Listener, topic_matches
from shared.events import Envelope
from shared.events.logs import LogBatch
from shared.history.read_model import build_logs, stored_envelopes
from shared.redaction import redact_data, redact_json

router = APIRouter(tags=["live"])
KEEPALIVE_S = 15.0
KEEPALIVE = b": keep-alive\n\n"
TOPIC_PATTERN = r"^[A-Za-z0-9_.*#-]{1,200}$"
# The log stream reads on this long after build.finished: the last batches travel on their own
# queue and may arrive just behind it.
LATE_LOGS_S = 0.5


# Everything streamed passes shared.redaction (stored history and live events alike).
def sse(envelope: Envelope, routing_key: str) -> bytes:
    event = redact_data(json.loads(envelope.to_json())) | {"routingkey": routing_key}
    data = json.dumps(event, separators=(",", ":"))
    return f"id: {envelope.id}\nevent: {routing_key}\ndata: {data}\n\n".encode()


def sse_log(batch: LogBatch) -> bytes:
    return b"event: log\ndata: " + redact_json(batch.to_json()) + b"\n\n"


def sse_named(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(redact_data(data), separators=(',', ':'))}\n\n".encode()


@router.get("/builds/{build_id}/events/stream", dependencies=[ReadAccess])
async def stream_build(
    request: Request,
    deps: Deps,
    build_id: str,
    logs: Annotated[bool, Query(description="also send the build's live log lines (`event: log`)")] = True,
    attempt: Annotated[
        int,
        Query(
            ge=1, description="only this attempt and later ones (a replay's), ending at its build.finished"
        ),
    ] = 1,
) -> StreamingResponse:
    listener = deps.live.listen(build_id=build_id, logs=logs)  # before reading history: no gap
    history = await in_session(deps, stored_envelopes, build_id) if deps.sessions else []
    history = [(envelope, key) for envelope, key in history if envelope.attempt >= attempt]
    return _streaming(_build_stream(request, deps, listener, history, build_id, attempt))


@router.get("/builds/{build_id}/logs/stream", dependencies=[ReadAccess])
async def stream_build_logs(request: Request, deps: Deps, build_id: str) -> StreamingResponse:
    listener = deps.live.listen(build_id=build_id, pattern="build.finished", logs=True)
    history = await in_session(deps, stored_envelopes, build_id) if deps.sessions else []
    finished = next((envelope for envelope, key in history if key == "build.finished"), None)
    if finished is not None:
        deps.live.forget(listener)
        stored = await in_session(deps, build_logs, build_id)
        return _streaming(_finished_log_stream(stored, finished))
    return _streaming(_log_stream(request, deps, listener, build_id))


@router.get("/events/stream", dependencies=[ReadAccess])
async def stream_all(
    request: Request,
    deps: Deps,
    filter: Annotated[str, Query(pattern=TOPIC_PATTERN, description="routing-key pattern")] = "#",
    package: str | None = None,
) -> StreamingResponse:
    listener = deps.live.listen(pattern=filter, package=package)
    return _streaming(_live(request, deps, listener, stop_on_finish=False, seen=set()))


def _streaming(body: AsyncIterator[bytes]) -> StreamingResponse:
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


async def _build_stream(
    request: Request,
    deps: Deps,
    listener: Listener,
    history: list[tuple[Envelope, str]],
    build_id: str,
    attempt: int = 1,
) -> AsyncIterator[bytes]:
    seen: set[str] = set()
    yield b": stream open\n\n"
    for envelope, key in history:
        seen.add(envelope.id)
        yield sse(envelope, key)
        if topic_matches("build.finished", key):
            deps.live.forget(listener)
            return
    if listener.log_build is not None:
        for batch, _key in deps.live.recent_logs.of(build_id):
            seen.add(batch.id)
            yield sse_log(batch)
    async for chunk in _live(request, deps, listener, stop_on_finish=True, seen=seen, min_attempt=attempt):
        yield chunk


async def _finished_log_stream(stored: list[str], finished: Envelope) -> AsyncIterator[bytes]:
    yield sse_named("stored", {"lines": stored})
    yield sse_named("end", {"status": finished.data.get("status")})


async def _log_stream(
    request: Request, deps: Deps, listener: Listener, build_id: str
) -> AsyncIterator[bytes]:
    seen: set[str] = set()
    yield b": stream open\n\n"
    for batch, _key in deps.live.recent_logs.of(build_id):
        seen.add(batch.id)
        yield sse_log(batch)
    status = None
    async for item in _items(request, deps, listener):
        if item is None:
            yield KEEPALIVE
            continue
        payload, _key = item
        if isinstance(payload, LogBatch):
            if payload.id not in seen:
                seen.add(payload.id)
                yield sse_log(payload)
        elif status is None:  # build.finished: read on a moment for the last batches
            status = payload.data.get("status")
            asyncio.get_running_loop().call_later(LATE_LOGS_S, _end, listener)
    yield sse_named("end", {"status": status})


def _end(listener: Listener) -> None:
    if not listener.queue.full():
        listener.queue.put_nowait(None)


async def _live(
    request: Request,
    deps: Deps,
    listener: Listener,
    *,
    stop_on_finish: bool,
    seen: set[str],
    min_attempt: int = 1,
) -> AsyncIterator[bytes]:
    async for item in _items(request, deps, listener):
        if item is None:
            yield KEEPALIVE
            continue
        payload, key = item
        if payload.id in seen:
            continue
        seen.add(payload.id)
        if isinstance(payload, LogBatch):
            yield sse_log(payload)
            continue
        if payload.attempt < min_attempt:
            continue  # an earlier attempt's late event: not what this stream follows
        yield sse(payload, key)
        if stop_on_finish and key == "build.finished":
            return


async def _items(
    request: Request, deps: Deps, listener: Listener
) -> AsyncIterator[tuple[Envelope | LogBatch, str] | None]:
    """What reaches the listener, until the client leaves, the hub closes, or the listener overflows;
    None after KEEPALIVE_S of quiet (send KEEPALIVE: idle proxies keep the connection open)."""
    try:
        while not listener.overflowed:
            try:
                item = await asyncio.wait_for(listener.queue.get(), timeout=KEEPALIVE_S)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield None
                continue
            if item is None:
                return
            yield item
    finally:
        deps.live.forget(listener)
