"""HTTP subscriptions end to end: a real receiver on 127.0.0.1, events from a real RabbitMQ vhost,
deliveries signed, retried after failures, and the last status visible through the API."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
import uvicorn

from services.gateway.webhooks.signature import verify
from shared.bus import Bus
from shared.events import BuildFinished, Envelope, StageStarted
from tests.integration.test_gateway_server import free_port, running_gateway
from tests.integration.test_gateway_webhooks import SECRETS

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {SECRETS['api']}"}


class Receiver:
    """A plain ASGI app that records deliveries and fails the first `fail_first` of each path."""

    def __init__(self, fail_first: int = 0):
        self.fail_first = fail_first
        self.calls: dict[str, int] = {}
        self.received: list[tuple[str, dict[str, str], bytes]] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        self.calls[path] = self.calls.get(path, 0) + 1
        failing = path == "/flaky" and self.calls[path] <= self.fail_first
        if not failing:
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            self.received.append((path, headers, body))
        await send({"type": "http.response.start", "status": 500 if failing else 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def test_signed_filtered_retried_and_visible(amqp_url, database_url):
    receiver = Receiver(fail_first=2)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(receiver, host="127.0.0.1", port=port, log_level="warning"))
    receiver_task = asyncio.create_task(server.serve())
    publisher = await Bus(amqp_url, source="test").connect()
    build_id = str(uuid.uuid4())
    try:
        # The receiver is on loopback: only the operator's allow-list lets a subscription reach it.
        gateway = running_gateway(amqp_url, database_url, subscription_allowed_hosts="127.0.0.1")
        async with gateway as (url, _app), httpx.AsyncClient(base_url=url) as api:
            assert (await api.post("/subscriptions", json={"url": "http://x"})).status_code == 401
            finished = await api.post(
                "/subscriptions",
                json={"url": f"http://127.0.0.1:{port}/finished", "filter": "build.finished"},
                headers=AUTH,
            )
            flaky = await api.post(
                "/subscriptions",
                json={"url": f"http://127.0.0.1:{port}/flaky", "filter": "#"},
                headers=AUTH,
            )
            assert finished.status_code == flaky.status_code == 201
            secret = finished.json()["secret"]

            for event in (StageStarted(stage="compile"), BuildFinished(status="succeeded")):
                await publisher.publish(Envelope.new(event, source="test", build_id=build_id))
            for _ in range(300):
                paths = [p for p, h, b in receiver.received if json.loads(b)["buildid"] == build_id]
                if sorted(paths) == ["/finished", "/flaky", "/flaky"]:
                    break
                await asyncio.sleep(0.1)
            assert sorted(paths) == ["/finished", "/flaky", "/flaky"]

            _path, headers, body = next(r for r in receiver.received if r[0] == "/finished")
            verify(secret, body, headers["x-kiln-signature"])  # raises if not signed right
            assert headers["x-kiln-event"] == "build.finished"
            assert json.loads(body)["type"] == BuildFinished.ce_type()

            for _ in range(50):  # an outcome is recorded just after its delivery's answer
                listed = {
                    s["url"].rsplit("/", 1)[-1]: s
                    for s in (await api.get("/subscriptions", headers=AUTH)).json()
                }
                if listed["flaky"]["delivered"] >= 2:
                    break
                await asyncio.sleep(0.1)
            assert "secret" not in listed["flaky"]
            assert listed["flaky"]["last_status"] == "204" and listed["flaky"]["delivered"] >= 2
            assert listed["finished"]["delivered"] >= 1
            assert (
                await api.delete(f"/subscriptions/{listed['flaky']['id']}", headers=AUTH)
            ).status_code == 204
    finally:
        await publisher.stop(grace_s=1)
        server.should_exit = True
        await receiver_task
