"""Finding 9: anonymous reads leaked credentials. A real gateway on RabbitMQ and MariaDB: reads
need the token when it listens beyond loopback, and what the run history or the broker carries
(a `user:token@` clone URL, a token as the URL's user name, Authorization headers in a log tail)
reaches no answer, page or stream."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import uuid

import httpx
import pytest
from sqlalchemy import select

from shared.bus import Bus
from shared.db.models import BuildRun, BuildStep, EventLog
from shared.events import BuildFinished, Envelope, StageFinished
from tests.integration.test_gateway_live import read_sse
from tests.integration.test_gateway_seed import seed_build
from tests.integration.test_gateway_server import running_gateway
from tests.integration.test_gateway_webhooks import SECRETS

pytestmark = pytest.mark.integration
BEARER = {"Authorization": f"Bearer {SECRETS['api']}"}
BROWSER = {"Authorization": "Basic " + base64.b64encode(f"kiln:{SECRETS['api']}".encode()).decode()}
# Generated per run: what a careless trigger or a chatty tool left in the history.
PASSWORD = secrets.token_hex(12)
TOKEN_AS_USER = "ghp_" + secrets.token_hex(18)
BASIC_VALUE = base64.b64encode(f"deploy:{secrets.token_hex(10)}".encode()).decode()
BEARER_VALUE = secrets.token_urlsafe(24)
LEAKED = (PASSWORD, TOKEN_AS_USER, BASIC_VALUE, BEARER_VALUE)
READS = ("/builds", "/registry", "/events/stream", "/api/catalogue")


def seed_leaky_build(sessions) -> str:
    build_id, _ = seed_build(sessions, package="leaky")
    with sessions() as session:
        run = session.execute(select(BuildRun).where(BuildRun.build_id == build_id)).scalar_one()
        run.repo_url = f"https://x-access-token:{PASSWORD}@github.com/example/monorepo.git"
        for row in session.execute(select(EventLog).where(EventLog.build_id == build_id)).scalars():
            if row.routing_key == "build.requested":
                body = json.loads(row.body)
                body["data"]["source"]["repo_url"] = run.repo_url
                row.body = json.dumps(body)
        session.add(
            BuildStep(
                build_id=build_id,
                stage="docs",
                status="failed",
                log_tail=[
                    f"cloning https://{TOKEN_AS_USER}@github.com/example/monorepo.git",
                    f"> Authorization: Basic {BASIC_VALUE}",
                    f"curl -H 'Authorization: Bearer {BEARER_VALUE}' https://api.example.com",
                ],
                error=f"fetch https://{TOKEN_AS_USER}@github.com/example/monorepo.git failed",
            )
        )
        session.commit()
    return build_id


def assert_clean(text: str, where: str) -> None:
    for secret in LEAKED:
        assert secret not in text, f"{where} leaks {secret[:6]}…"


async def sse_text(api: httpx.AsyncClient, path: str, until: str) -> str:
    async with api.stream("GET", path, headers=BEARER) as response:
        assert response.status_code == 200
        events = await asyncio.wait_for(read_sse(response, until=until), 20)
    return json.dumps(events)


async def test_reads_need_the_token_beyond_loopback(amqp_url, database_url, sessions):
    build_id = seed_leaky_build(sessions)
    gateway = running_gateway(amqp_url, database_url, host="0.0.0.0")
    async with gateway as (url, _app), httpx.AsyncClient(base_url=url, timeout=30) as api:
        for path in (*READS, f"/builds/{build_id}", f"/builds/{build_id}/events", f"/builds/{build_id}/logs"):
            answer = await api.get(path)
            assert answer.status_code == 401, path
            assert answer.headers["www-authenticate"].startswith("Basic")
        for path in ("/", f"/ui/builds/{build_id}", f"/ui/builds/{build_id}/report"):
            page = await api.get(path)
            assert page.status_code == 401, path
            assert page.headers["www-authenticate"].startswith("Basic")  # the browser asks once
            assert (await api.get(path, headers=BROWSER)).status_code == 200, path
        assert (await api.get("/builds", headers=BEARER)).status_code == 200
        # A browser's cached Basic credentials ride along on a hostile page's POST (CSRF): writes
        # take the token as Bearer only.
        cancel = await api.post(f"/builds/{build_id}/cancel", headers=BROWSER)
        assert cancel.status_code == 401
        assert (await api.get("/builds", headers={"Authorization": "Bearer wrong"})).status_code == 401
        assert (await api.get("/healthz")).status_code == 200  # probes stay open
        assert (await api.get("/readyz")).status_code == 200


async def test_reads_stay_open_on_loopback_and_an_explicit_opt_out_is_loud(
    amqp_url, database_url, sessions, caplog
):
    async with running_gateway(amqp_url, database_url) as (url, _app), httpx.AsyncClient(base_url=url) as api:
        assert (await api.get("/builds")).status_code == 200  # 127.0.0.1: only this host reaches it
    caplog.set_level(logging.WARNING, logger="kiln.gateway")
    gateway = running_gateway(amqp_url, database_url, host="0.0.0.0", read_requires_token=False)
    async with gateway as (url, _app), httpx.AsyncClient(base_url=url) as api:
        assert (await api.get("/builds")).status_code == 200
        page = await api.get("/")
        assert "security-warning" in page.text and "KILN_READ_REQUIRES_TOKEN=false" in page.text
    assert any("KILN_READ_REQUIRES_TOKEN=false" in r.getMessage() for r in caplog.records)


async def test_stored_credentials_reach_no_answer_page_or_stream(amqp_url, database_url, sessions):
    build_id = seed_leaky_build(sessions)
    gateway = running_gateway(amqp_url, database_url, host="0.0.0.0")
    async with gateway as (url, _app), httpx.AsyncClient(base_url=url, timeout=30) as api:
        answers = {
            path: await api.get(path, headers=BROWSER if path.startswith("/ui") else BEARER)
            for path in (
                "/builds?package=leaky",
                f"/builds/{build_id}",
                f"/builds/{build_id}/events",
                f"/builds/{build_id}/logs",
                f"/builds/diff?a={build_id}&b={build_id}",
                f"/ui/builds/{build_id}",
                f"/ui/builds/{build_id}/report",
            )
        }
        for path, answer in answers.items():
            assert answer.status_code == 200, (path, answer.text)
            assert_clean(answer.text, path)
        assert "github.com/example/monorepo.git" in answers[f"/builds/{build_id}/events"].text  # still useful
        assert "Authorization: Basic ***" in answers[f"/builds/{build_id}/logs"].text
        assert_clean(
            await sse_text(api, f"/builds/{build_id}/events/stream", "build.finished"), "SSE history"
        )
        assert_clean(await sse_text(api, f"/builds/{build_id}/logs/stream", "end"), "SSE stored logs")


async def test_live_events_are_masked_before_they_are_streamed(amqp_url, database_url):
    build_id = str(uuid.uuid4())
    leaky = StageFinished(
        stage="docs",
        status="failed",
        error=f"clone https://{TOKEN_AS_USER}@github.com/x.git: Authorization: Basic {BASIC_VALUE}",
        log_tail=(f"https://x:{PASSWORD}@git.example.com/x.git", f"Bearer {BEARER_VALUE}"),
        detail={"password": PASSWORD, "token": BEARER_VALUE},
    )
    publisher = await Bus(amqp_url, source="test").connect()
    try:
        gateway = running_gateway(amqp_url, database_url, host="0.0.0.0")
        async with (
            gateway as (url, _app),
            httpx.AsyncClient(base_url=url, timeout=30) as api,
            api.stream("GET", "/events/stream", headers=BEARER) as response,
        ):
            reader = asyncio.create_task(read_sse(response, until="build.finished"))
            await asyncio.sleep(0.3)
            for event in (leaky, BuildFinished(status="failed")):
                await publisher.publish(Envelope.new(event, source="test", build_id=build_id))
            events = await asyncio.wait_for(reader, 20)
    finally:
        await publisher.stop(grace_s=1)
    streamed = json.dumps(events)
    assert "stage.finished" in streamed
    assert_clean(streamed, "live SSE")
