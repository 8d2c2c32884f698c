"""Finding 8: HTTP subscriptions as a proxy into the gateway's network (SSRF), a port-scan oracle
and an unbounded cost per event. Attacks on a real gateway (RabbitMQ vhost, MariaDB) with real
receivers on 127.0.0.1; loopback is reachable only through the operator's allow-list."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid

import httpx
import pytest
import uvicorn

from services.gateway.subscriptions.delivery import UNREACHABLE
from shared.bus import Bus
from shared.bus import topology as t
from shared.events import BuildFinished, Envelope, StageStarted
from tests.integration.test_gateway_server import free_port, running_gateway
from tests.integration.test_gateway_webhooks import SECRETS

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {SECRETS['api']}"}
INTERNAL = [
    "http://127.0.0.1:15672/api/queues",  # the broker's management API
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",  # cloud metadata
    "http://mysql:3306/",  # a compose service name (private address there, no address here)
    "http://localhost:5672/",  # a name resolving to 127.0.0.1
    "http://0x7f000001:8000/",  # 127.0.0.1 spelt in hex
    "http://2130706433:8000/",  # and as one number
    "http://0.0.0.0:5672/",
    "http://[::1]:8000/",
    "http://[::ffff:127.0.0.1]:8000/",  # IPv4-mapped IPv6
    "http://[::ffff:169.254.169.254]/",
    "http://[fe80::1]/",
    "http://[fd00::1]/",
    "http://10.0.0.5/",
    "http://172.18.0.3:3306/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://224.0.0.1/",  # multicast
    "http://240.0.0.1/",  # reserved
]


class Receiver:
    """Loopback receiver: /ok answers 204, /bad 400, /slow never in time, /redirect a 302 to /internal."""

    def __init__(self, port: int):
        self.port = port
        self.calls: dict[str, int] = {}
        self.hosts: list[str] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        path = scope["path"]
        self.calls[path] = self.calls.get(path, 0) + 1
        self.hosts.append(dict(scope["headers"]).get(b"host", b"").decode())
        headers: list[tuple[bytes, bytes]] = []
        status = {"/ok": 204, "/bad": 400, "/redirect": 302, "/slow": 200}.get(path, 404)
        if path == "/redirect":
            headers = [(b"location", f"http://127.0.0.1:{self.port}/internal".encode())]
        if path == "/slow":
            await asyncio.sleep(30)  # accepts the connection, reads the request, never answers in time
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
async def receiver():
    port = free_port()
    app = Receiver(port)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    yield app
    server.should_exit = True
    await asyncio.wait_for(task, 20)


@pytest.fixture
async def publish(amqp_url):
    bus = await Bus(amqp_url, source="test").connect()

    async def send(event=None) -> str:
        envelope = Envelope.new(
            event or StageStarted(stage="compile"), source="test", build_id=str(uuid.uuid4())
        )
        await bus.publish(envelope)
        return envelope.id

    yield send
    await bus.stop(grace_s=1)


async def subscribe(api: httpx.AsyncClient, url: str) -> httpx.Response:
    return await api.post("/subscriptions", json={"url": url, "filter": "#"}, headers=AUTH)


async def listed(api: httpx.AsyncClient) -> dict[int, dict]:
    return {s["id"]: s for s in (await api.get("/subscriptions", headers=AUTH)).json()}


async def wait_for(api, ids, until, timeout_s=30.0) -> dict[int, dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = await listed(api)
        if all(until(rows[i]) for i in ids) or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.2)


async def test_internal_addresses_are_refused_at_registration(amqp_url, database_url):
    async with running_gateway(amqp_url, database_url) as (url, _app), httpx.AsyncClient(base_url=url) as api:
        before = await listed(api)  # the run's database is shared: other tests' subscriptions may be there
        for target in INTERNAL:
            answer = await subscribe(api, target)
            assert answer.status_code == 422, (target, answer.text)
            detail = answer.json()["detail"]
            assert detail.startswith("subscription refused:"), detail
            assert "KILN_SUBSCRIPTION_ALLOWED_HOSTS" in detail or "does not resolve" in detail, detail
        credentials = await subscribe(api, "https://user:ghp_secret@example.com/hook")
        assert credentials.status_code == 422 and "credentials" in credentials.json()["detail"]
        assert await listed(api) == before  # no refused subscription was stored


async def test_redirects_are_not_followed_and_a_slow_receiver_is_cut_off(
    amqp_url, database_url, receiver, publish
):
    base = f"http://127.0.0.1:{receiver.port}"
    gateway = running_gateway(
        amqp_url, database_url, subscription_allowed_hosts="127.0.0.1", subscription_timeout_s=1.0
    )
    async with gateway as (url, _app), httpx.AsyncClient(base_url=url) as api:
        closed_port = free_port()
        ids = {}
        for name, target in (
            ("redirect", f"{base}/redirect"),
            ("slow", f"{base}/slow"),
            ("closed", f"http://127.0.0.1:{closed_port}/"),
        ):
            answer = await subscribe(api, target)
            assert answer.status_code == 201, answer.text
            ids[name] = answer.json()["id"]
        started = time.monotonic()
        event_id = await publish()
        rows = await wait_for(api, ids.values(), lambda s: s["last_event_id"] == event_id)
        elapsed = time.monotonic() - started
        for subscription in ids.values():
            await api.delete(f"/subscriptions/{subscription}", headers=AUTH)
    assert receiver.calls.get("/internal") is None  # the redirect's target was never asked
    assert receiver.calls["/redirect"] == 1  # and a redirect is not retried
    redirect = rows[ids["redirect"]]
    assert redirect["last_status"] == "302" and "redirects are not followed" in redirect["last_error"]
    # Three attempts of at most 1 s each plus the 1 s and 4 s back-off, not 30 s of dripping.
    assert receiver.calls["/slow"] == 3 and elapsed < 15, elapsed
    slow, closed = rows[ids["slow"]], rows[ids["closed"]]
    # A timeout and a refused connection read the same: no port-scan oracle.
    assert slow["last_status"] == closed["last_status"] == "unreachable"
    assert slow["last_error"] == closed["last_error"] == f"{UNREACHABLE} (attempt 3)"


async def test_the_address_is_checked_again_at_delivery(amqp_url, database_url, receiver, publish):
    """Allowed when registered, not any more when delivered: the stored URL reaches nothing (the
    same check is what stops a name whose DNS answer changes after registration)."""
    target = f"http://127.0.0.1:{receiver.port}/ok"
    allowed = running_gateway(amqp_url, database_url, subscription_allowed_hosts="127.0.0.1")
    async with allowed as (url, _app), httpx.AsyncClient(base_url=url) as api:
        subscription = (await subscribe(api, target)).json()["id"]
        first = await publish()
        rows = await wait_for(api, [subscription], lambda s: s["last_event_id"] == first)
        assert rows[subscription]["last_status"] == "204"
    async with running_gateway(amqp_url, database_url) as (url, app), httpx.AsyncClient(base_url=url) as api:
        second = await publish()
        rows = await wait_for(api, [subscription], lambda s: s["last_event_id"] == second)
        assert rows[subscription]["last_status"] == "refused"
        assert "loopback" in rows[subscription]["last_error"]

        async def rebinding(host: str, port: int) -> list[str]:
            return ["127.0.0.1"] if rebinding.registered else ["93.184.216.34"]

        rebinding.registered = False  # type: ignore[attr-defined]
        app.state.deps.subscriptions.resolver = rebinding  # the DNS answer an attacker controls
        rebound = await subscribe(api, f"http://rebind.example:{receiver.port}/ok")
        assert rebound.status_code == 201, rebound.text
        rebinding.registered = True  # type: ignore[attr-defined]
        third = await publish()
        rebound_id = rebound.json()["id"]
        rows = await wait_for(api, [rebound_id], lambda s: s["last_event_id"] == third)
        assert rows[rebound_id]["last_status"] == "refused"
        await api.delete(f"/subscriptions/{subscription}", headers=AUTH)
        await api.delete(f"/subscriptions/{rebound_id}", headers=AUTH)
    assert receiver.calls["/ok"] == 1  # only the delivery made while the operator allowed it


async def test_requests_go_to_the_checked_address_with_the_name_in_the_host_header(
    amqp_url, database_url, receiver, publish
):
    gateway = running_gateway(amqp_url, database_url, subscription_allowed_hosts="localhost")
    async with gateway as (url, _app), httpx.AsyncClient(base_url=url) as api:
        subscription = (await subscribe(api, f"http://localhost:{receiver.port}/ok")).json()["id"]
        event_id = await publish()
        rows = await wait_for(api, [subscription], lambda s: s["last_event_id"] == event_id)
        await api.delete(f"/subscriptions/{subscription}", headers=AUTH)
    assert rows[subscription]["last_status"] == "204"
    assert receiver.hosts == [f"localhost:{receiver.port}"]


async def test_subscriptions_are_capped(amqp_url, database_url):
    gateway = running_gateway(amqp_url, database_url, subscriptions_max=2)
    async with gateway as (url, _app), httpx.AsyncClient(base_url=url) as api:
        existing = len([s for s in (await listed(api)).values() if s["active"]])
        ids = []
        for n in range(max(0, 2 - existing)):
            answer = await subscribe(api, f"https://93.184.216.{n + 1}/hook")  # public, no DNS needed
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
        over = await subscribe(api, "https://93.184.216.34/hook")
        assert over.status_code == 409 and "KILN_SUBSCRIPTIONS_MAX" in over.json()["detail"]
        for subscription in ids:
            await api.delete(f"/subscriptions/{subscription}", headers=AUTH)


async def test_a_failing_receiver_is_paused_by_its_circuit_breaker(amqp_url, database_url, receiver, publish):
    gateway = running_gateway(
        amqp_url,
        database_url,
        subscription_allowed_hosts="127.0.0.1",
        subscription_breaker_failures=2,
        subscription_pause_s=300.0,
    )
    async with gateway as (url, _app), httpx.AsyncClient(base_url=url) as api:
        subscription = (await subscribe(api, f"http://127.0.0.1:{receiver.port}/bad")).json()["id"]
        for _ in range(2):
            event_id = await publish()
            await wait_for(api, [subscription], lambda s, e=event_id: s["last_event_id"] == e)
        row = (await listed(api))[subscription]
        assert row["state"] == "paused" and row["consecutive_failures"] == 2 and row["paused_until"]
        assert row["last_status"] == "400"
        await asyncio.sleep(2.5)  # past the deliverer's cache: the pause is read from the table
        await publish(BuildFinished(status="succeeded"))
        await asyncio.sleep(1.5)
        await api.delete(f"/subscriptions/{subscription}", headers=AUTH)
    assert receiver.calls["/bad"] == 2  # a 4xx is not retried, and the paused one got nothing more


def test_the_delivery_queue_is_bounded_and_drops_its_oldest(amqp_vhost, amqp_url):
    async def declare():
        bus = await Bus(amqp_url, source="test").connect()
        await bus.stop(grace_s=1)

    asyncio.run(declare())
    listing = subprocess.run(
        ["rabbitmqctl", "list_queues", "-p", amqp_vhost, "name", "arguments", "--formatter", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    queues = {q["name"]: q["arguments"] for q in json.loads(listing.stdout)}
    arguments = {pair[0]: pair[-1] for pair in queues[t.GATEWAY_SUBSCRIPTIONS.name]}  # [[key, value] ...]
    assert arguments["x-max-length"] == 10_000 and arguments["x-overflow"] == "drop-head"
