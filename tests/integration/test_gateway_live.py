"""SSE on a real uvicorn + RabbitMQ + MariaDB: a build's events arrive in order, history then live."""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import asynccontextmanager

import httpx
import pytest

from shared.bus import Bus
from shared.events import Envelope, StageStarted
from tests.integration.test_gateway_seed import build_envelopes, seed_build
from tests.integration.test_gateway_server import running_gateway

pytestmark = pytest.mark.integration


@asynccontextmanager
async def stream(url: str, build_id: str | None, params: dict[str, str] | None = None):
    path = f"/builds/{build_id}/events/stream" if build_id else "/events/stream"
    async with (
        httpx.AsyncClient(base_url=url, timeout=30) as client,
        client.stream("GET", path, params=params) as r,
    ):
        yield r


async def read_sse(response: httpx.Response, until: str = "build.finished", limit: int = 200):
    events, current = [], {}
    async for line in response.aiter_lines():
        if not line:
            if "data" in current:
                events.append(current)
                if current.get("event") == until or len(events) >= limit:
                    return events
            current = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            current[name] = value
    return events


async def test_build_stream_delivers_history_then_live_in_order(amqp_url, database_url):
    build_id = str(uuid.uuid4())
    envelopes = build_envelopes(build_id)
    publisher = await Bus(amqp_url, source="test").connect()
    try:
        async with running_gateway(amqp_url, database_url) as (url, _app), stream(url, build_id) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            reader = asyncio.create_task(read_sse(response))
            await asyncio.sleep(0.3)
            for envelope in envelopes:
                await publisher.publish(envelope)
            events = await asyncio.wait_for(reader, 20)
    finally:
        await publisher.stop(grace_s=1)
    assert [e["id"] for e in events] == [e.id for e in envelopes]
    assert json.loads(events[0]["data"])["type"] == envelopes[0].type


async def test_finished_build_stream_replays_history_and_ends(amqp_url, database_url, sessions):
    build_id, envelopes = seed_build(sessions, package="livehist")
    async with running_gateway(amqp_url, database_url) as (url, _app), stream(url, build_id) as response:
        events = await asyncio.wait_for(read_sse(response), 20)
    assert [e["id"] for e in events] == [e.id for e in envelopes]


async def test_all_events_stream_filters_by_routing_key(amqp_url, database_url):
    publisher = await Bus(amqp_url, source="test").connect()
    build_id = str(uuid.uuid4())
    try:
        gateway = running_gateway(amqp_url, database_url)
        async with gateway as (url, _app), stream(url, None, {"filter": "stage.*"}) as response:
            reader = asyncio.create_task(read_sse(response, until="stage.started", limit=1))
            await asyncio.sleep(0.3)
            for envelope in build_envelopes(build_id)[:1]:  # build.requested: filtered out
                await publisher.publish(envelope)
            await publisher.publish(Envelope.new(StageStarted(stage="scan"), source="t", build_id=build_id))
            events = await asyncio.wait_for(reader, 20)
    finally:
        await publisher.stop(grace_s=1)
    assert [e["event"] for e in events] == ["stage.started"]
