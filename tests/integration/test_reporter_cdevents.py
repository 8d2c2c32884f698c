"""The CDEvents feed on a real RabbitMQ: every Kiln event of a full build goes through the
reporter's cdevents queue; everything published on `kiln.cdevents` validates against v0.5.1."""

from __future__ import annotations

import asyncio
import json
import uuid
from functools import partial

import aio_pika
import pytest

from services.reporter.cdevents import validate
from services.reporter.cdevents.cloudevents import cdevent_of
from services.reporter.handlers import BusCDEventPublisher, on_event_for_cdevents
from shared.bus import Bus
from shared.bus import topology as t
from shared.events import CATALOGUE
from tests.unit.test_reporter_stream import TARGETS, full_build_stream

pytestmark = pytest.mark.integration


async def test_full_build_feed_validates(amqp_url):
    build_id = str(uuid.uuid4())
    stream = full_build_stream(build_id)
    bus = await Bus(amqp_url, source="reporter").connect()
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(t.CDEVENTS_EXCHANGE)
        tool_queue = await channel.declare_queue("", exclusive=True)  # an outside CD tool
        await tool_queue.bind(exchange, "#")
        handler = partial(on_event_for_cdevents, publisher=BusCDEventPublisher(bus),
                          build_url=lambda b: f"http://kiln.example/builds/{b}")  # fmt: skip
        await bus.consume(t.REPORTER_CDEVENTS, {model: handler for model in CATALOGUE})
        for envelope in stream:
            await bus.publish(envelope)
        # 1 queued + 1 started + 9 taskrun started + 9 finished + 1 finished + 2x4 artifacts + 2 deployed
        expected = 1 + 1 + 9 + 9 + 1 + 2 * 4 + len(TARGETS)
        received = []
        deadline = asyncio.get_running_loop().time() + 30
        while len(received) < expected and asyncio.get_running_loop().time() < deadline:
            message = await tool_queue.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            assert message.content_type == "application/cloudevents+json"
            cloudevent = json.loads(message.body)
            assert cloudevent["id"] == cloudevent["data"]["context"]["id"]
            assert cloudevent["type"] == cloudevent["data"]["context"]["type"]
            received.append((message.routing_key, cdevent_of(cloudevent)))
    finally:
        await connection.close()
        await bus.stop(grace_s=5)
    assert len(received) == expected
    for routing_key, cdevent in received:
        validate(cdevent)
        assert cdevent["context"]["type"].startswith(f"dev.cdevents.{routing_key}.")
    kinds = {key for key, _ in received}
    assert kinds == {
        "pipelinerun.queued", "pipelinerun.started", "pipelinerun.finished", "taskrun.started",
        "taskrun.finished", "artifact.packaged", "artifact.published", "service.deployed",
    }  # fmt: skip
    finished = next(c for k, c in received if k == "pipelinerun.finished")
    assert finished["subject"] == {
        "id": build_id,
        "source": "/kiln/deployer",
        "content": {
            "pipelineName": "demo",
            "uri": f"http://kiln.example/builds/{build_id}",
            "outcome": "success",
        },
    }
