"""Acceptance of the webhooks on a real RabbitMQ vhost and MariaDB: per provider, a signed push
gives 202 and exactly one build.requested per changed branch; bad signatures, pings, deletions
and redeliveries start nothing."""

from __future__ import annotations

import asyncio

import aio_pika
import httpx
import pytest

from services.gateway.bootstrap import bootstrap
from services.gateway.settings import GatewaySettings
from shared.bus import topology as t
from shared.events import decode
from tests.integration.test_gateway_seed import seed_build
from tests.unit.test_gateway_fakes import make_secrets
from tests.unit.test_gateway_payloads import (
    cloud_change,
    cloud_push,
    commit_hash,
    delivery,
    gateway_config,
    github_ping,
    github_push,
    server_change,
    server_ping,
    server_push,
)

pytestmark = pytest.mark.integration
SECRETS = make_secrets()


def gateway_settings(amqp_url: str, database_url: str) -> GatewaySettings:
    return GatewaySettings(
        amqp_url=amqp_url,
        database_url=database_url,
        bitbucket_cloud_secret=SECRETS["bitbucket_cloud"],
        bitbucket_server_secret=SECRETS["bitbucket_server"],
        github_secret=SECRETS["github"],
        api_token=SECRETS["api"],
        bitbucket_server_url="https://bitbucket.example.com",
        # These tests are about other things than concurrency groups (test_gateway_concurrency.py):
        # builds of one branch start side by side, as before groups existed.
        concurrency_limit=0,
    )


@pytest.fixture
async def gateway(amqp_url, database_url):
    app = bootstrap(gateway_settings(amqp_url, database_url), config=gateway_config())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


@pytest.fixture
async def requested(amqp_url):
    """A test queue bound to build.requested: what the compiler would receive."""
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(t.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue("", exclusive=True)
    await queue.bind(exchange, "build.requested")

    async def take(settle_s: float = 0.5):
        await asyncio.sleep(settle_s)  # 202 means confirmed: anything published is routed by now
        got = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            got.append(decode(message.body))
        return got

    yield take
    await connection.close()


async def send(client, provider, event, payload, *, secret="ok", delivery_id=None):
    key = SECRETS[provider.replace("-", "_")] if secret == "ok" else secret
    body, headers = delivery(provider, event, payload, key, delivery_id)
    return await client.post(f"/webhook/{provider}", content=body, headers=headers)


CASES = {
    "bitbucket-cloud": (
        "repo:push",
        lambda a, b: cloud_push(cloud_change("main", a, old=commit_hash()), cloud_change("develop", b)),
        lambda: cloud_push(cloud_change("main", None)),
    ),
    "bitbucket-server": (
        "repo:refs_changed",
        lambda a, b: server_push(server_change("refs/heads/main", a), server_change("refs/heads/develop", b)),
        lambda: server_push(server_change("refs/heads/main", "0" * 40, change_type="DELETE")),
    ),
    "github": (
        "push",
        lambda a, _b: github_push("refs/heads/main", a),
        lambda: github_push("refs/heads/main", None),
    ),
}


@pytest.mark.parametrize("provider", sorted(CASES))
async def test_provider_acceptance(gateway, requested, provider):
    event, push, deletion = CASES[provider]
    await requested(0)  # start empty
    a, b = commit_hash(), commit_hash()
    payload = push(a, b)
    expected = 1 if provider == "github" else 2

    reply = await send(gateway, provider, event, payload, delivery_id=f"{provider}-{a}")
    assert reply.status_code == 202, reply.text
    build_ids = reply.json()["build_ids"]
    events = await requested()
    assert len(events) == expected and sorted(e.buildid for e in events) == sorted(build_ids)
    assert {e.event().source.commit for e in events} == {a, b}.intersection(
        {e.event().source.commit for e in events}
    )
    assert all(e.event().trigger.kind == provider for e in events)

    # redelivery: same delivery id, then a new id for the same refs and commits
    again = await send(gateway, provider, event, payload, delivery_id=f"{provider}-{a}")
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    other_id = await send(gateway, provider, event, payload, delivery_id=f"{provider}-{a}-2")
    assert other_id.status_code == 200
    # bad and missing signature
    assert (
        await send(gateway, provider, event, push(commit_hash(), commit_hash()), secret="nope")
    ).status_code == 401
    assert (
        await send(gateway, provider, event, push(commit_hash(), commit_hash()), secret=None)
    ).status_code == 401
    # deletion
    assert (await send(gateway, provider, event, deletion())).status_code == 200
    assert await requested() == []


async def test_pings_are_2xx(gateway, requested):
    await requested(0)
    assert (await send(gateway, "github", "ping", github_ping())).status_code == 200
    assert (await send(gateway, "bitbucket-server", "diagnostics:ping", server_ping())).status_code == 200
    assert await requested() == []


async def test_concurrent_redeliveries_start_one_build(gateway, requested):
    await requested(0)
    payload = github_push("refs/heads/develop", commit_hash())
    replies = await asyncio.gather(
        *(send(gateway, "github", "push", payload, delivery_id=f"c-{i}") for i in range(8))
    )
    assert sorted(r.status_code for r in replies) == [200] * 7 + [202]
    assert len(await requested()) == 1


async def test_generic_trigger_needs_token_and_numbers_builds(gateway, requested):
    await requested(0)
    body = {
        "package": "demo",
        "notify": "raci",
        "platform": "linux/amd64",
        "skip_deploy": True,
        "ref": "main",
    }
    assert (await gateway.post("/webhook/build", json=body)).status_code == 401
    auth = {"Authorization": f"Bearer {SECRETS['api']}"}
    first = await gateway.post("/webhook/build", json=body, headers=auth)
    second = await gateway.post("/webhook/build", json=body, headers=auth)
    assert first.status_code == second.status_code == 202
    events = [e.event() for e in await requested()]
    assert [e.options.platforms for e in events] == [("linux/amd64",)] * 2
    assert events[1].build_number == events[0].build_number + 1
    assert events[0].version == "axion" and events[0].options.skip_deploy


async def test_health_readiness_metrics_openapi(gateway):
    assert (await gateway.get("/healthz")).json() == {"status": "ok"}
    ready = await gateway.get("/readyz")
    assert ready.status_code == 200 and ready.json()["broker"] and ready.json()["database"]
    assert "kiln_gateway_webhooks_total" in (await gateway.get("/metrics")).text
    assert "/webhook/github" in (await gateway.get("/openapi.json")).json()["paths"]


async def test_newer_push_supersedes_queued_builds_when_configured(amqp_url, database_url, sessions):
    queued, _ = seed_build(sessions, package="demo", status="queued", ref="refs/heads/helix")
    running, _ = seed_build(sessions, package="demo", status="running", ref="refs/heads/helix")
    settings = gateway_settings(amqp_url, database_url).model_copy(update={"supersede_queued": True})
    app = bootstrap(settings, config=gateway_config())
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw") as gw,
    ):
        reply = await send(gw, "github", "push", github_push("refs/heads/helix", commit_hash()))
    assert reply.status_code == 202
    assert reply.json()["superseded"] == [queued]  # the running one finishes
    assert running not in reply.json()["superseded"]
