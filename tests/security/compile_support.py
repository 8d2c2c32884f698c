"""Real parts for the pushed-tree attacks: a git smart-HTTP server holding the attacker's branch, a
compiler worker *process* (so /proc/self/environ is a real worker's environment, with its token)
on a real RabbitMQ vhost and MariaDB database, and a recorder of every event on the exchange."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aio_pika
import yaml

from shared.bus import Bus
from shared.bus import topology as t
from shared.events import BuildRequested
from shared.events.build import Options, Source
from tests.integration.git_http_support import AuthenticatedGitServer, git, self_signed

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "monorepo"
OPERATOR_EXAMPLE = ROOT / "examples" / "operator" / "config.yaml"
GIT_USER = "x-access-token"
GIT_TOKEN = "ghp_kilnSecurityT0ken_5e4d3c2b1a0f9e8d"  # made up: what matters is where it ends up


def example_tree(destination: Path, *, with_config: bool = True) -> Path:
    """A copy of the example monorepo, as a developer would push it."""
    shutil.copytree(
        EXAMPLE, destination, ignore=shutil.ignore_patterns(".ruff_cache", "__pycache__", "tests")
    )
    if not with_config:
        (destination / "config.yaml").unlink()
    return destination


def push(tree: Path, repos: Path, name: str) -> str:
    """Commit `tree` (symlinks and all) and force-push it to main of the bare repository
    repos/name, as a branch's author can; the commit id."""
    author = ("-c", "user.name=attacker", "-c", "user.email=attacker@kiln.invalid")
    git("init", "-q", "-b", "main", cwd=tree)
    git("add", "-A", cwd=tree)
    git(*author, "commit", "-q", "-m", "a push", cwd=tree)
    bare = repos / name
    if not bare.exists():
        git("init", "-q", "--bare", "-b", "main", str(bare))
    git("push", "-q", "--force", str(bare), "HEAD:refs/heads/main", cwd=tree)
    return git("rev-parse", "HEAD", cwd=tree)


def operator_config(path: Path, edit=None) -> Path:
    """The example operator config, optionally changed by `edit(raw dict)`, written to `path`."""
    raw = yaml.safe_load(OPERATOR_EXAMPLE.read_text())
    if edit is not None:
        edit(raw)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def start_compiler(work: Path, env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    """`python -m services.compiler worker` with `env` over this process's environment."""
    log_file = work / f"compiler-{uuid.uuid4().hex[:6]}.log"
    (work / "builds").mkdir(exist_ok=True)
    full_env = {
        **os.environ,
        "KILN_GIT_TOKEN": GIT_TOKEN,
        "KILN_GIT_USERNAME": GIT_USER,
        "KILN_INSTANCE": f"sec-{uuid.uuid4().hex[:6]}",
        "KILN_COMPILER_CACHE": str(work / "compile-cache"),
        "KILN_WORK_DIR": str(work / "builds"),
        "KILN_RETRY_BASE_DELAY_S": "0.2",  # a retry, if there were one, shows within the wait
        **env,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "services.compiler", "worker"],
        cwd=ROOT,
        env=full_env,
        stdout=log_file.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    while "compiler ready" not in log_file.read_text():
        assert worker.poll() is None, f"the compiler exited: {log_file.read_text()}"
        assert time.monotonic() < deadline, f"the compiler is not ready: {log_file.read_text()}"
        time.sleep(0.2)
    return worker, log_file


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()


class Events:
    """Every event published on the exchange while it listens: (routing key, CloudEvent body)."""

    def __init__(self, amqp_url: str):
        self._url = amqp_url
        self.seen: list[tuple[str, dict]] = []

    async def __aenter__(self) -> Events:
        self._connection = await aio_pika.connect(self._url)
        channel = await self._connection.channel()
        exchange = await channel.declare_exchange(
            t.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self._queue = await channel.declare_queue("", exclusive=True)
        await self._queue.bind(exchange, "#")
        return self

    async def __aexit__(self, *exc) -> None:
        await self._connection.close()

    async def _drain(self) -> None:
        while (message := await self._queue.get(no_ack=True, fail=False)) is not None:
            self.seen.append((message.routing_key, json.loads(message.body)))

    def of(self, build_id: str, key: str | None = None) -> list[dict]:
        return [b for k, b in self.seen if b.get("buildid") == build_id and (key is None or k == key)]

    async def wait(self, build_id: str, done, timeout: float = 120) -> list[tuple[str, dict]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await self._drain()
            mine = [(k, b) for k, b in self.seen if b.get("buildid") == build_id]
            if done(mine):
                return mine
            await asyncio.sleep(0.1)
        raise AssertionError(f"build {build_id}: not done in {timeout}s; saw {[k for k, _ in mine]}")

    async def settle(self, seconds: float) -> None:
        """Keep listening a while: what a retry or a late publish would add shows up here."""
        await asyncio.sleep(seconds)
        await self._drain()


def finished(events) -> bool:
    return any(key == "build.finished" for key, _ in events)


def stage(events, name: str) -> dict:
    return next(b["data"] for k, b in events if k == "stage.finished" and b["data"]["stage"] == name)


async def request_build(amqp_url: str, repo_url: str, commit: str, platforms=("linux/amd64",)) -> str:
    build_id = str(uuid.uuid4())
    bus = await Bus(amqp_url, source="gateway").connect()
    try:
        event = BuildRequested(
            package="demo",
            source=Source(repo_url=repo_url, ref="refs/heads/main", commit=commit),
            options=Options(platforms=list(platforms)),
        )
        await bus.emit(event, build_id=build_id, package="demo")
    finally:
        await bus.stop(grace_s=5)
    return build_id


@contextmanager
def https_git_server(repos: Path, certs: Path) -> Iterator[tuple[AuthenticatedGitServer, dict[str, str]]]:
    """The attacker's branch on a real https git server (its own CA), and what a compiler needs to
    fetch from it with its token: git trusts the CA, and the server's host is one the operator lets
    the token go to (the token never goes over plain http: tests/security/test_sources.py)."""
    cert, key = self_signed(certs)
    with AuthenticatedGitServer(repos, username=GIT_USER, token=GIT_TOKEN, tls=(cert, key)) as server:
        yield server, {"GIT_SSL_CAINFO": str(cert), "KILN_GIT_TOKEN_HOSTS": "127.0.0.1"}
