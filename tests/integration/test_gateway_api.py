"""The build API over the reporter's tables (rows written by the test) on real MariaDB, with
cancel and replay publishing to a real RabbitMQ vhost."""

from __future__ import annotations

import asyncio

import aio_pika
import httpx
import pytest

from services.gateway.bootstrap import bootstrap
from shared.bus import topology as t
from shared.events import decode
from tests.integration.test_gateway_seed import seed_build
from tests.integration.test_gateway_webhooks import SECRETS, gateway_settings
from tests.unit.test_gateway_payloads import gateway_config

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {SECRETS['api']}"}


@pytest.fixture
async def gateway(amqp_url, database_url):
    app = bootstrap(gateway_settings(amqp_url, database_url), config=gateway_config())
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw") as c,
    ):
        yield c


@pytest.fixture
async def everything(amqp_url):
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(t.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue("", exclusive=True)
    await queue.bind(exchange, "#")

    async def take(build_id: str):
        await asyncio.sleep(0.5)
        got = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            envelope = decode(message.body)
            if envelope.buildid == build_id:
                got.append((message.routing_key, envelope))
        return got

    yield take
    await connection.close()


async def test_list_filters_and_pages(gateway, sessions):
    ok, _ = seed_build(sessions, package="apilist", ref="refs/heads/main")
    bad, _ = seed_build(sessions, package="apilist", status="failed", ref="refs/heads/develop")
    listed = (await gateway.get("/builds", params={"package": "apilist"})).json()
    assert listed["total"] == 2 and {b["build_id"] for b in listed["builds"]} == {ok, bad}
    failed = (await gateway.get("/builds", params={"package": "apilist", "status": "failed"})).json()
    assert [b["build_id"] for b in failed["builds"]] == [bad]
    by_branch = (await gateway.get("/builds", params={"package": "apilist", "branch": "main"})).json()
    assert [b["build_id"] for b in by_branch["builds"]] == [ok]
    page = (await gateway.get("/builds", params={"package": "apilist", "limit": 1, "offset": 1})).json()
    assert len(page["builds"]) == 1 and page["total"] == 2
    assert (await gateway.get("/builds", params={"status": "bogus"})).status_code == 422


async def test_detail_events_logs_registry(gateway, sessions):
    build_id, envelopes = seed_build(sessions, package="apidetail")
    detail = (await gateway.get(f"/builds/{build_id}")).json()
    assert [s["stage"] for s in detail["steps"]][:3] == ["config", "keys", "compile"]
    assert detail["compile"]["factories"] == ["core", "report"]
    assert len(detail["images"]) == 4 and detail["images"][0]["size_bytes"] == 50_000_000
    assert detail["scans"][0]["high"] == 1
    events = (await gateway.get(f"/builds/{build_id}/events")).json()
    assert [e["id"] for e in events] == [e.id for e in envelopes]
    logs = (await gateway.get(f"/builds/{build_id}/logs")).text
    assert "[compile] compile line 1" in logs
    registry = (await gateway.get("/registry", params={"package": "apidetail"})).json()
    assert len(registry) == 4
    assert (await gateway.get("/builds/nope")).status_code == 404


async def test_multi_arch_index_size_is_the_sum_of_its_platform_images(gateway, sessions):
    build_id, _ = seed_build(sessions, package="apiindex", arm_size_mb=40, multi_arch=True)
    detail = (await gateway.get(f"/builds/{build_id}")).json()
    index = [i for i in detail["images"] if i["platform"] == "multi-arch"]
    assert [i["size_bytes"] for i in index] == [None, None]  # what was recorded stays as recorded
    assert [i["platforms_size_bytes"] for i in index] == [90_000_000, 90_000_000]
    assert index[0]["platform_sizes"] == {"linux/amd64": 50_000_000, "linux/arm64": 40_000_000}
    registry = (await gateway.get("/registry", params={"package": "apiindex"})).json()
    assert sorted(r["platform"] for r in registry) == sorted(["linux/amd64", "linux/arm64", "multi-arch"] * 2)
    assert {r["platforms_size_bytes"] for r in registry if r["platform"] == "multi-arch"} == {90_000_000}


async def test_report_page_is_the_mailed_report(gateway, sessions):
    build_id, _ = seed_build(sessions, package="apireport")
    page = await gateway.get(f"/ui/builds/{build_id}/report")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Images per service and platform" in page.text and "Step timeline" in page.text
    assert f"/ui/builds/{build_id}" in page.text  # the report links back to the build page
    assert (await gateway.get("/ui/builds/nope/report")).status_code == 404


async def test_diff(gateway, sessions):
    a, _ = seed_build(sessions, package="apidiff", size_mb=50)
    b, _ = seed_build(sessions, package="apidiff", size_mb=40)
    diff = (await gateway.get("/builds/diff", params={"a": a, "b": b})).json()
    image = diff["images"][0]
    assert image["size_bytes"]["changed"] and image["size_bytes"]["delta"] == -10_000_000


async def test_cancel_needs_token_and_publishes(gateway, sessions, everything):
    build_id, _ = seed_build(sessions, package="apicancel")
    assert (await gateway.post(f"/builds/{build_id}/cancel")).status_code == 401
    assert (await gateway.post(f"/builds/{build_id}/cancel", headers=AUTH)).status_code == 202
    got = await everything(build_id)
    assert [key for key, _ in got] == ["build.cancel.requested"]


async def test_replay_whole_build_and_from_stage(gateway, sessions, everything):
    build_id, envelopes = seed_build(sessions, package="apireplay")
    original = {e.routing_key(): e for e in envelopes}
    reply = await gateway.post(f"/builds/{build_id}/replay", headers=AUTH)
    assert reply.status_code == 202
    (key, replayed), *_ = await everything(build_id)
    assert key == "build.requested" and replayed.replayof == original["build.requested"].id
    assert replayed.attempt == 2 and replayed.id != replayed.replayof

    reply = await gateway.post(f"/builds/{build_id}/replay", params={"from": "image"}, headers=AUTH)
    got = await everything(build_id)
    assert sorted(k for k, _ in got) == ["image.requested.amd64"] * 2 + ["image.requested.arm64"] * 2
    assert all(e.replayof for _, e in got)
    for stage, keys in (("scan", {"image.pushed"}), ("deploy", {"compile.completed"})):
        assert (
            await gateway.post(f"/builds/{build_id}/replay", params={"from": stage}, headers=AUTH)
        ).status_code == 202
        assert {k for k, _ in await everything(build_id)} == keys
    assert (
        await gateway.post(f"/builds/{build_id}/replay", params={"from": "nope"}, headers=AUTH)
    ).status_code == 422
