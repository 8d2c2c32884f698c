"""Finding 1: empty or short secrets disabled authentication. Each test is the outsider's attack
on the real parts: the gateway process, the compose file, a gateway on RabbitMQ and MariaDB."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

import aio_pika
import httpx
import pytest
import yaml

from services.gateway.settings import GatewaySettings
from shared.bus import topology as t
from shared.settings import MIN_SECRET_BYTES
from tests.integration.test_compose_stack import compose_config
from tests.integration.test_gateway_server import running_gateway
from tests.unit.test_gateway_payloads import commit_hash, delivery, github_push

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]
GATEWAY_KEYS = (
    "KILN_API_TOKEN",
    "KILN_BITBUCKET_CLOUD_SECRET",
    "KILN_BITBUCKET_SERVER_SECRET",
    "KILN_GITHUB_SECRET",
)
COMPOSE_REQUIRED = (*GATEWAY_KEYS, "KILN_REGISTRY_USERNAME", "KILN_REGISTRY_PASSWORD")


def start_gateway_process(env: dict[str, str]) -> subprocess.CompletedProcess:
    """`python -m services.gateway` as compose runs it; bad settings must stop it before it serves."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
    return subprocess.run(
        [sys.executable, "-m", "services.gateway", "--host", "127.0.0.1", "--port", "1"],
        env={**clean, "KILN_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("name", GATEWAY_KEYS)
@pytest.mark.parametrize("value", ["", "   ", "short-but-not-empty"])
def test_gateway_refuses_to_start_with_an_empty_or_short_secret(name, value):
    result = start_gateway_process({name: value})
    assert result.returncode == 2, result.stderr
    assert name in result.stderr
    assert "empty" in result.stderr or f"at least {MIN_SECRET_BYTES}" in result.stderr


def test_a_32_byte_secret_is_accepted_and_an_unset_optional_credential_stays_unset():
    settings = GatewaySettings(api_token="a" * 31 + "b", github_secret=secrets.token_hex(16))
    assert settings.api_token is not None and settings.github_secret is not None
    assert GatewaySettings(registry_password="").registry_password is None  # compose's `${X:-}`


@pytest.mark.parametrize("name", COMPOSE_REQUIRED)
@pytest.mark.parametrize("how", ["unset", "empty"])
def test_compose_refuses_to_start_without_each_secret(tmp_path, name, how):
    from tests.integration.test_compose_stack import SECRETS

    env = {k: v for k, v in SECRETS.items() if k != name}
    if how == "empty":
        env[name] = ""
    result = compose_config(tmp_path, env)
    assert result.returncode != 0
    assert f"set {name} in .env" in result.stderr


def test_only_the_gateway_gets_the_gateway_secrets(tmp_path):
    from tests.integration.test_compose_stack import SECRETS

    result = compose_config(tmp_path, SECRETS)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name, service in services.items():
        environment = service.get("environment") or {}
        held = {key for key in GATEWAY_KEYS if key in environment}
        assert held == (set(GATEWAY_KEYS) if name == "gateway" else set()), name
    assert services["gateway"]["environment"]["KILN_API_TOKEN"] == SECRETS["KILN_API_TOKEN"]


def empty_key_signature(body: bytes) -> str:
    """What an attacker computes when the gateway's key is empty: HMAC with b""."""
    return "sha256=" + hmac.new(b"", body, hashlib.sha256).hexdigest()


@pytest.fixture
async def build_requests(amqp_url):
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(t.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue("", exclusive=True)
    await queue.bind(exchange, "build.requested")

    async def taken() -> int:
        await asyncio.sleep(0.5)
        count = 0
        while await queue.get(no_ack=True, fail=False) is not None:
            count += 1
        return count

    yield taken
    await connection.close()


async def test_a_provider_without_a_secret_refuses_deliveries(amqp_url, database_url, build_requests):
    body, headers = delivery("github", "push", github_push("refs/heads/main", commit_hash()), None)
    forged = {**headers, "X-Hub-Signature-256": empty_key_signature(body)}
    gateway = running_gateway(amqp_url, database_url, github_secret=None)
    async with gateway as (url, _app), httpx.AsyncClient(base_url=url) as client:
        for attempt in (headers, forged):
            answer = await client.post("/webhook/github", content=body, headers=attempt)
            assert answer.status_code == 401
            reason = answer.json()["reason"]
            assert "KILN_GITHUB_SECRET" in reason and "KILN_ALLOW_UNSIGNED_GITHUB" in reason
    assert await build_requests() == 0


async def raw_post(url: str, path: str, authorization: str, body: bytes) -> int:
    """POST with the Authorization header byte for byte (httpx refuses a trailing space)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {authorization}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    return int(status_line.split()[1])


async def test_an_empty_bearer_token_mutates_nothing(amqp_url, database_url):
    body = b'{"url": "https://example.com/"}'
    async with running_gateway(amqp_url, database_url) as (url, _app):
        for authorization in ("Bearer ", "Bearer", "Bearer \t", "Basic Og==", "Basic " + "x" * 8):
            assert await raw_post(url, "/subscriptions", authorization, body) == 401, authorization
    async with running_gateway(amqp_url, database_url, api_token=None) as (url, _app):
        assert await raw_post(url, "/subscriptions", "Bearer ", body) == 403


async def test_unsigned_opt_in_is_loud_in_the_log_and_on_the_dashboard(
    amqp_url, database_url, build_requests, caplog
):
    caplog.set_level(logging.WARNING, logger="kiln.gateway")
    body, headers = delivery("github", "push", github_push("refs/heads/main", commit_hash()), None)
    gateway = running_gateway(amqp_url, database_url, github_secret=None, allow_unsigned_github=True)
    async with gateway as (url, _app), httpx.AsyncClient(base_url=url) as client:
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any("KILN_ALLOW_UNSIGNED_GITHUB=true" in w and "UNSIGNED" in w for w in warnings), warnings
        page = await client.get("/")
        assert page.status_code == 200
        assert 'class="security-warning"' in page.text and "KILN_ALLOW_UNSIGNED_GITHUB=true" in page.text
        answer = await client.post("/webhook/github", content=body, headers=headers)
        assert answer.status_code == 202, answer.text
        # the other providers keep their secrets: a forged Bitbucket Cloud delivery still fails
        cloud = await client.post(
            "/webhook/bitbucket-cloud", content=b"{}", headers={"X-Event-Key": "repo:push"}
        )
        assert cloud.status_code == 401
    assert await build_requests() >= 1


async def test_no_banner_when_every_provider_is_signed(amqp_url, database_url):
    gateway = running_gateway(amqp_url, database_url)
    async with gateway as (url, _app), httpx.AsyncClient(base_url=url) as client:
        page = await client.get("/")
        assert page.status_code == 200 and "security-warning" not in page.text.split("<main>")[0]
