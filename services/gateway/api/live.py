"""Server-Sent Events: a build's events as they happen (history first, then live), or all events.

Each SSE message is `id: <event id>`, `event: <routing key>`, `data: <the CloudEvent JSON>`.
A build's stream ends after its `build.finished`; the all-events stream runs until the client leaves.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from services.gateway.api.db import in_session
from services.gateway.auth import ReadAccess
from services.gateway.deps import Deps
from services.gateway.live import Listener, topic_matches
from services.gateway.runs import stored_envelopes
from shared.events import Envelope

router = APIRouter(tags=["live"])
KEEPALIVE_S = 15.0
TOPIC_PATTERN = r"^[A-Za-z0-9_.*#-]{1,200}$"


def sse(envelope: Envelope, routing_key: str) -> bytes:
    data = json.dumps(json.loads(envelope.to_json()) | {"routingkey": routing_key}, separators=(",", ":"))
    return f"id: {envelope.id}\nevent: {routing_key}\ndata: {data}\n\n".encode()


@router.get("/builds/{build_id}/events/stream", dependencies=[ReadAccess])
async def stream_build(request: Request, deps: Deps, build_id: str) -> StreamingResponse:
    listener = deps.live.listen(build_id=build_id)  # before reading history: nothing falls in between
    history = await in_session(deps, stored_envelopes, build_id) if deps.sessions else []
    return _streaming(_build_stream(request, deps, listener, history))


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
    request: Request, deps: Deps, listener: Listener, history: list[tuple[Envelope, str]]
) -> AsyncIterator[bytes]:
    seen: set[str] = set()
    yield b": stream open\n\n"
    for envelope, key in history:
        seen.add(envelope.id)
        yield sse(envelope, key)
        if topic_matches("build.finished", key):
            deps.live.forget(listener)
            return
    async for chunk in _live(request, deps, listener, stop_on_finish=True, seen=seen):
        yield chunk


async def _live(
    request: Request, deps: Deps, listener: Listener, *, stop_on_finish: bool, seen: set[str]
) -> AsyncIterator[bytes]:
    try:
        while not listener.overflowed:
            try:
                item = await asyncio.wait_for(listener.queue.get(), timeout=KEEPALIVE_S)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield b": keep-alive\n\n"
                continue
            if item is None:
                return
            envelope, key = item
            if envelope.id in seen:
                continue
            seen.add(envelope.id)
            yield sse(envelope, key)
            if stop_on_finish and key == "build.finished":
                return
    finally:
        deps.live.forget(listener)
