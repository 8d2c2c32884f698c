"""Finding 6 of issue #13: one delivery started thousands of builds (a 262 KB Bitbucket Server
refs_changed planned 5,575), and nothing bounded the builds of one branch.

Now a delivery starts builds for at most KILN_MAX_REFS_PER_DELIVERY refs (default 20): the rest
are listed in the 202 answer's `skipped`, first, with the setting's name. And a package's branch
has at most KILN_MAX_BUILDS_PER_BRANCH builds queued or running (default 5): a push beyond it is
answered 429 naming the package, branch and setting. On the real parts: the gateway on RabbitMQ
and MariaDB, and the real reporter worker keeping the run history the gateway counts.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from shared.bus import Bus
from shared.events import BuildFinished, Envelope
from tests.security.sources_support import (
    ROOT,
    api,
    build_requests,
    deliver,
    operator_config,
    parsed,
    real_gateway,
)
from tests.unit.test_gateway_payloads import commit_hash, github_push

pytestmark = pytest.mark.integration

SERVER = {"repository": "PROJ/monorepo", "provider": "bitbucket-server", "branches": ["*"]}
LIMIT = 256 * 1024  # the gateway's KILN_MAX_WEBHOOK_BODY default


def refs_changed(count: int) -> bytes:
    """A Bitbucket Server repo:refs_changed with `count` branch updates, compact as the server sends it."""
    payload = {
        "eventKey": "repo:refs_changed",
        "actor": {"name": "mallory"},
        "repository": {"slug": "monorepo", "project": {"key": "PROJ"}},
        "changes": [
            {"refId": f"refs/heads/b{i}", "toHash": commit_hash(), "type": "UPDATE"} for i in range(count)
        ],
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def biggest_refs_changed() -> tuple[bytes, int]:
    """The most refs that fit in the body limit (≈ 262 KB)."""
    count = LIMIT // 70
    while len(body := refs_changed(count)) > LIMIT:
        count -= 25
    return body, count


async def test_a_262_kb_refs_changed_with_thousands_of_refs_starts_at_most_20(amqp_url, database_url):
    body, count = biggest_refs_changed()
    assert len(body) > 250_000 and count > 2000
    config = parsed(operator_config({"server": SERVER}))
    server_url = {"bitbucket_server_url": "https://bitbucket.example.com"}
    async with (
        build_requests(amqp_url) as requested,
        real_gateway(amqp_url, database_url, config, **server_url) as gw,
    ):
        started = time.monotonic()
        reply = await deliver(gw, "bitbucket-server", "repo:refs_changed", None, body=body)
        elapsed = time.monotonic() - started
        assert reply.status_code == 202, reply.text[:500]
        answer = reply.json()
        assert len(answer["build_ids"]) == 20
        assert answer["skipped"][0].startswith(f"{count - 20} more ref change(s) not built")
        assert "at most 20 refs (KILN_MAX_REFS_PER_DELIVERY)" in answer["skipped"][0]
        assert len(reply.content) < 8_000  # the answer stays small, however many refs came in
        events = [e.event() for e in await requested.take()]
        assert sorted(e.source.ref for e in events) == sorted(f"refs/heads/b{i}" for i in range(20))
        assert {e.source.repo_url for e in events} == {"https://bitbucket.example.com/scm/proj/monorepo.git"}
        assert elapsed < 10, elapsed

    # The operator may set it lower (or higher, up to 1000).
    async with (
        build_requests(amqp_url) as requested,
        real_gateway(amqp_url, database_url, config, max_refs_per_delivery=3, **server_url) as gw,
    ):
        reply = await deliver(gw, "bitbucket-server", "repo:refs_changed", None, body=refs_changed(50))
        assert reply.status_code == 202 and len(reply.json()["build_ids"]) == 3
        assert len(await requested.take()) == 3


def start_reporter(tmp_path, amqp_url: str, database_url: str) -> tuple[subprocess.Popen, object]:
    """The real reporter worker: it projects build.requested into the run history (status queued)."""
    log = tmp_path / "reporter.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KILN_")},
        "KILN_AMQP_URL": amqp_url,
        "KILN_DATABASE_URL": database_url,
        "KILN_INSTANCE": f"limits-{uuid.uuid4().hex[:6]}",
        "KILN_HISTORY_BATCH_WAIT_MS": "5",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "services.reporter", "worker"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    return worker, log


async def wait_for(predicate, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_builds_of_one_branch_are_capped_with_429(amqp_url, database_url, tmp_path):
    config = parsed(operator_config({"capped": {"repository": "example/capped", "provider": "github"}}))
    reporter, log = start_reporter(tmp_path, amqp_url, database_url)
    publisher = await Bus(amqp_url, source="test").connect()
    try:
        async with real_gateway(amqp_url, database_url, config, max_builds_per_branch=3) as gw:

            async def push(branch: str):
                payload = github_push(f"refs/heads/{branch}", commit_hash(), full_name="example/capped")
                return await deliver(gw, "github", "push", payload)

            async def queued(count: int):
                listed = (await gw.get("/builds", params={"package": "capped", "status": "queued"})).json()
                return listed["total"] >= count

            started = []
            for _ in range(3):
                reply = await push("main")
                assert reply.status_code == 202, reply.text
                started += reply.json()["build_ids"]
            await wait_for(lambda: queued(3), f"the reporter to record 3 queued builds ({log})")

            over = await push("main")
            assert over.status_code == 429, over.text
            assert over.json()["status"] == "too many builds"
            reason = over.json()["reason"]
            assert "capped refs/heads/main: 3 builds already queued or running, the limit is 3" in reason
            assert "KILN_MAX_BUILDS_PER_BRANCH" in reason
            by_api = await gw.post("/builds", json={"package": "capped", "ref": "main"}, headers=api())
            assert by_api.status_code == 429 and "KILN_MAX_BUILDS_PER_BRANCH" in by_api.json()["detail"]

            # Another branch is not held up by this one.
            assert (await push("develop")).status_code == 202

            # One finishes: the branch takes a new push again.
            done = BuildFinished(status="succeeded", duration_ms=10)
            await publisher.publish(Envelope.new(done, source="test", build_id=started[0], package="capped"))

            async def accepted() -> bool:
                return (await push("main")).status_code == 202

            await wait_for(accepted, "a push to be accepted once a build finished")
    finally:
        await publisher.stop(grace_s=1)
        reporter.send_signal(signal.SIGTERM)
        try:
            reporter.wait(timeout=30)
        finally:
            reporter.kill()
