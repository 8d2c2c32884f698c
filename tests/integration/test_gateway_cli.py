"""The `kiln` CLI as a real subprocess against a real gateway (uvicorn, RabbitMQ, MariaDB)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import pytest

from shared.bus import Bus
from shared.bus.live_logs import LogShipper
from shared.events import BuildFinished, Envelope, StageFinished, StageStarted
from tests.integration.test_gateway_seed import seed_build
from tests.integration.test_gateway_server import running_gateway
from tests.integration.test_gateway_webhooks import SECRETS

pytestmark = pytest.mark.integration
KILN = [sys.executable, "-m", "cli"]


def cli_env(url: str) -> dict[str, str]:
    return os.environ | {"KILN_GATEWAY_URL": url, "KILN_TOKEN": SECRETS["api"]}


async def run_cli(url: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *KILN, *args, env=cli_env(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_pipeline_follows_stages_and_exits_with_the_result(amqp_url, database_url):
    publisher = await Bus(amqp_url, source="test").connect()
    try:
        async with running_gateway(amqp_url, database_url) as (url, app):
            process = await asyncio.create_subprocess_exec(
                *KILN, "pipeline", "demo", "--skip-deploy", "--platform", "linux/amd64",
                env=cli_env(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            first = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            assert first.startswith("started build "), first
            build_id = first.split()[2]
            live = app.state.deps.live
            while not live._listeners:  # the CLI's stream is open: nothing published now is missed
                await asyncio.sleep(0.05)
            for event in (
                StageStarted(stage="compile"),
                StageFinished(stage="compile", status="succeeded", duration_ms=1500),
                StageFinished(stage="image", status="failed", error="exit 1", platform="linux/amd64"),
                BuildFinished(status="failed", failed_stage="image", error="exit 1", duration_ms=9000),
            ):
                await publisher.publish(Envelope.new(event, source="test", build_id=build_id, package="demo"))
            out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        await publisher.stop(grace_s=1)
    text = out.decode()
    assert process.returncode == 1, (text, err.decode())
    assert "✓ compile succeeded in 1.5s" in text and "✗ image [linux/amd64] failed" in text
    assert "build failed at image" in text


async def test_read_commands_and_replay(amqp_url, database_url, sessions):
    a, _ = seed_build(sessions, package="clitest", size_mb=50)
    b, _ = seed_build(sessions, package="clitest", size_mb=60)
    async with running_gateway(amqp_url, database_url) as (url, _app):
        code, out, _ = await run_cli(url, "builds", "--package", "clitest")
        assert code == 0 and a in out and b in out
        code, out, _ = await run_cli(url, "status", a)
        assert code == 0 and "compile" in out and "50.0 MB" in out
        code, out, _ = await run_cli(url, "logs", a)
        assert "[scan] scan line 2" in out
        code, out, _ = await run_cli(url, "diff", a, b)
        assert code == 0 and "size_bytes 50000000 → 60000000 (+10000000)" in out
        code, out, _ = await run_cli(url, "replay", a, "--from", "scan", "--no-follow")
        assert code == 0 and out.count("republished dev.kiln.image.pushed.v1") == 4
        assert f"attempt 2 of build {a} reruns from scan" in out
        code, _, err = await run_cli(url, "replay", a, "--from", "docs")
        assert code != 0 and "stage 'docs' never ran" in err, err
        code, out, _ = await run_cli(url, "events", "--build", a, "stage.*")
        assert code == 0 and "stage.finished" in out and "build.requested" not in out
    code, _, err = await run_cli("http://127.0.0.1:9", "builds")
    assert code == 4 and "cannot reach the gateway" in err


async def test_logs_follow_prints_live_lines_as_the_stages_print_them(amqp_url, database_url):
    build_id = str(uuid.uuid4())
    publisher = await Bus(amqp_url, source="test").connect()
    shipper = LogShipper("imager")
    await shipper.start(publisher)
    try:
        async with running_gateway(amqp_url, database_url) as (url, app):
            process = await asyncio.create_subprocess_exec(
                *KILN,
                "logs",
                build_id,
                "-f",
                env=cli_env(url),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            live = app.state.deps.live
            while not live._listeners:  # the CLI's stream is open
                await asyncio.sleep(0.05)
            where = {"target": "web", "platform": "linux/amd64"}
            await publisher.publish(
                Envelope.new(StageStarted(stage="image", **where), source="t", build_id=build_id)
            )
            with shipper.stream(build_id, stage="image", **where) as log:
                log("Step 1/2 : FROM base")
                log("Step 2/2 : COPY . /srv")
            first = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            failed = StageFinished(
                stage="image", status="failed", error="exit 1", log_tail=("Step 2/2 : COPY . /srv",), **where
            )
            finished = BuildFinished(status="failed", failed_stage="image", error="exit 1", duration_ms=9)
            for event in (failed, finished):
                await publisher.publish(Envelope.new(event, source="t", build_id=build_id))
            rest, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        await shipper.stop()
        await publisher.stop(grace_s=1)
    text = first + rest.decode()
    assert process.returncode == 0, err.decode()
    assert first == "[image/web/linux/amd64] Step 1/2 : FROM base\n"  # printed before the stage ended
    assert text.splitlines() == [
        "[image/web/linux/amd64] Step 1/2 : FROM base",
        "[image/web/linux/amd64] Step 2/2 : COPY . /srv",
        "[image/web/linux/amd64] ERROR exit 1",  # the tail was already shown live: not twice
        "[build.finished] ERROR exit 1",
    ]
