"""Private repositories for real: a git smart-HTTP server (`git http-backend`) that demands HTTP
Basic auth (tests/integration/git_http_support.py), fetched by GitSource and by a compiler
worker process with KILN_GIT_TOKEN.

The servers speak https (a self-signed certificate git trusts through GIT_SSL_CAINFO): the token
goes only over https to a host in KILN_GIT_TOKEN_HOSTS (tests/security/test_sources.py proves
the refusals). What is proven: the right token fetches the pushed commit, shallow; a wrong or
missing token fails with a message naming the repository and what to do; the token appears in none of: the
argv of any git process (a recording `git` first on PATH, plus GIT_TRACE for the processes git
starts itself), the requests the server saw, the clone's .git directory, the log output, the
events.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aio_pika
import pytest
import yaml
from pydantic import SecretStr

from services.compiler.ports import FetchFailed
from shared.bus import Bus
from shared.bus import topology as t
from shared.config import generate_keys
from shared.events import BuildRequested
from shared.events.build import Options, Source
from shared.git_source import GitSource
from tests.integration.git_http_support import (
    AuthenticatedGitServer,
    git,
    git_argv_recorder,
    make_bare_repository,
    self_signed,
)
from tests.integration.imager_support import required_env

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "monorepo"
TOKEN = "ghp_kilnTestT0ken_9f8e7d6c5b4a"  # made up; what matters is that it never leaks
OTHER_TOKEN = "ghp_someOtherRepositoryT0ken_1234"
USER = "x-access-token"
HOSTS = {"127.0.0.1"}  # KILN_GIT_TOKEN_HOSTS of these tests: the servers listen there


@pytest.fixture
def tls(tmp_path, monkeypatch) -> tuple[Path, Path]:
    cert, key = self_signed(tmp_path / "tls")
    monkeypatch.setenv("GIT_SSL_CAINFO", str(cert))
    return cert, key


@pytest.fixture
def pushed(tmp_path) -> tuple[Path, str]:
    """Bare repositories under tmp/repos: app.git whose main has two commits; returns the root
    and the first commit (the 'pushed' one: not the branch tip, so it is fetched by id)."""
    work = tmp_path / "app"
    work.mkdir()
    (work / "README").write_text("pushed commit\n")
    root = tmp_path / "repos"
    root.mkdir()
    make_bare_repository(root, "app.git", work)
    first = git("rev-parse", "HEAD", cwd=work)
    (work / "README").write_text("a later commit\n")
    make_bare_repository(root, "app.git", work)
    return root, first


@pytest.fixture
def traced_git(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """Every git run in this test records its argv (top level) and its own child processes
    (GIT_TRACE: remote helpers, askpass): (argv log, trace log)."""
    bin_dir, argv_log = git_argv_recorder(tmp_path / "recorder")
    trace_log = tmp_path / "recorder" / "git-trace.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("GIT_TRACE", str(trace_log))
    return argv_log, trace_log


def files_under(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def test_the_right_token_fetches_the_pushed_commit_shallow(pushed, traced_git, tls, tmp_path, caplog):
    root, first = pushed
    argv_log, trace_log = traced_git
    caplog.set_level(logging.DEBUG)
    with AuthenticatedGitServer(root, username=USER, token=TOKEN, tls=tls) as server:
        source = Source(repo_url=server.url("app.git"), ref="refs/heads/main", commit=first)
        git_source = GitSource(token=SecretStr(TOKEN), username=USER, token_hosts=HOSTS)
        checkout = git_source.fetch(source, tmp_path / "work")

    assert git("rev-parse", "HEAD", cwd=checkout) == first
    assert (checkout / "README").read_text() == "pushed commit\n"
    assert git("rev-parse", "--is-shallow-repository", cwd=checkout) == "true"
    assert git("rev-list", "--count", "HEAD", cwd=checkout) == "1"
    # The server asked (401) and git answered through the credential machinery, not the URL.
    assert server.requests[0].user is None and not server.requests[0].authorized
    assert any(r.authorized and r.user == USER for r in server.requests)
    assert not server.backend_errors

    argv = argv_log.read_text()
    assert "fetch -q --depth 1 --no-tags --" in argv and server.url("app.git") in argv  # recorded
    assert "remote-http" in trace_log.read_text()  # git-remote-https is the same program
    for where, text in {
        "git argv": argv,
        "git trace (child processes)": trace_log.read_text(),
        "requests seen by the server": " ".join(r.target for r in server.requests),
        ".git/config": (checkout / ".git" / "config").read_text(),
        "logs": caplog.text,
    }.items():
        assert TOKEN not in text, f"the token leaked into {where}"
    assert TOKEN.encode() not in files_under(checkout / ".git")


@pytest.mark.parametrize("token", [OTHER_TOKEN, None], ids=["wrong-token", "no-token"])
def test_a_wrong_or_missing_token_names_the_repository_and_what_to_do(
    token, pushed, traced_git, tls, tmp_path, caplog
):
    root, first = pushed
    argv_log, trace_log = traced_git
    caplog.set_level(logging.DEBUG)
    with AuthenticatedGitServer(root, username=USER, token=TOKEN, tls=tls) as server:
        url = server.url("app.git")
        fetcher = GitSource(token=SecretStr(token) if token else None, username=USER, token_hosts=HOSTS)
        with pytest.raises(FetchFailed) as failure:
            fetcher.fetch(Source(repo_url=url, ref="refs/heads/main", commit=first), tmp_path / "work")

    message = str(failure.value)
    assert message.startswith(url), message
    if token:
        assert f"refused the token in KILN_GIT_TOKEN (user name '{USER}'" in message
        assert "Authentication failed" in message  # git's own words follow
        assert any(r.user == USER and not r.authorized for r in server.requests)
    else:
        assert "requires credentials and none are configured: set KILN_GIT_TOKEN" in message
        assert all(r.user is None for r in server.requests)
    # One attempt: a refusal is not retried by ref.
    assert argv_log.read_text().count(" fetch ") == 1
    for text in (message, argv_log.read_text(), trace_log.read_text(), caplog.text):
        assert TOKEN not in text and OTHER_TOKEN not in text


# --- the compiler worker as a process, with KILN_GIT_TOKEN --------------------------------------


@pytest.fixture
def private_monorepo(tmp_path) -> tuple[Path, str]:
    """The example monorepo (keys outside it) pushed to tmp/repos/monorepo.git: (root, commit)."""
    work = tmp_path / "monorepo"
    shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns(".ruff_cache", "__pycache__", "tests"))
    generate_keys(tmp_path / "keys", "demo")  # operator_config() points keys.dir here
    root = tmp_path / "repos"
    root.mkdir()
    make_bare_repository(root, "monorepo.git", work)
    return root, git("rev-parse", "HEAD", cwd=work)


def push_feature_branch_off_develop(work: Path, bare: Path) -> str:
    """develop = main + a commit; bugfix/login = develop + a commit. Returns feature's commit."""
    author = ("-c", "user.name=kiln test", "-c", "user.email=test@kiln.invalid")
    for branch in ("develop", "bugfix/login"):
        git(*author, "commit", "-q", "--allow-empty", "-m", f"on {branch}", cwd=work)
        git("push", "-q", str(bare), f"HEAD:refs/heads/{branch}", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def operator_config(tmp_path: Path, keys: Path, sources: dict[str, str]) -> Path:
    """The example's config as the operator's file: one package per {name: clone_url}."""
    raw = yaml.safe_load((EXAMPLE.parent / "operator" / "config.yaml").read_text())
    demo = raw["packages"]["demo"]
    demo["keys"] = {"dir": str(keys)}
    raw["packages"] = {
        name: {**demo, "webhooks": {"repository": "example/monorepo", "clone_url": url}}
        for name, url in sources.items()
    }
    path = tmp_path / "operator" / "config.yaml"  # keys must live outside the config's directory
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(raw))
    return path


def start_worker(
    tmp_path: Path, amqp_url: str, database_url: str, path: str, extra: dict[str, str] | None = None
) -> tuple[subprocess.Popen, Path]:
    log_file = tmp_path / "worker.log"
    env = {
        **os.environ,
        "PATH": path,
        "KILN_AMQP_URL": amqp_url,
        "KILN_DATABASE_URL": database_url,
        "KILN_GIT_TOKEN": TOKEN,
        "KILN_LOG_LEVEL": "DEBUG",
        "KILN_INSTANCE": f"test-{uuid.uuid4().hex[:6]}",
        "KILN_COMPILER_CACHE": str(tmp_path / "compile-cache"),
        "KILN_ARTIFACT_STORE": f"file://{tmp_path / 'artifacts'}",
        "KILN_WORK_DIR": str(tmp_path / "builds"),
        # The dev registry's (.kiln/dev.env): stage compile reads each one's Python.
        "KILN_BASE_IMAGE_AMD64": required_env("KILN_BASE_IMAGE_AMD64"),
        "KILN_BASE_IMAGE_ARM64": required_env("KILN_BASE_IMAGE_ARM64"),
        "KILN_GIT_TOKEN_HOSTS": ",".join(HOSTS),
        **(extra or {}),
    }
    (tmp_path / "builds").mkdir()
    worker = subprocess.Popen(
        [sys.executable, "-m", "services.compiler", "worker"],
        cwd=REPO,
        env=env,
        stdout=log_file.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while "compiler ready" not in log_file.read_text():
        assert worker.poll() is None, f"the worker exited: {log_file.read_text()}"
        assert time.monotonic() < deadline, f"the worker is not ready: {log_file.read_text()}"
        time.sleep(0.2)
    return worker, log_file


async def collect(
    queue, build_ids: set[str], done, timeout: float = 300
) -> dict[str, list[tuple[str, dict]]]:
    got: dict[str, list[tuple[str, dict]]] = {b: [] for b in build_ids}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = await queue.get(no_ack=True, fail=False)
        if message is None:
            if all(done(events) for events in got.values()):
                return got
            await asyncio.sleep(0.1)
            continue
        body = json.loads(message.body)
        if body.get("buildid") in got:
            got[body["buildid"]].append((message.routing_key, body))
    raise AssertionError(
        f"builds did not finish within {timeout}s: { {b: [k for k, _ in e] for b, e in got.items()} }"
    )


def finished_or_imaged(events) -> bool:
    keys = [key for key, _ in events]
    return "build.finished" in keys or sum(k.startswith("image.requested.") for k in keys) == 4


async def test_a_compiler_worker_builds_a_private_repository_and_never_shows_the_token(
    private_monorepo, traced_git, tls, tmp_path, amqp_url, database_url
):
    root, commit = private_monorepo
    feature = push_feature_branch_off_develop(tmp_path / "monorepo", root / "monorepo.git")
    argv_log, trace_log = traced_git
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(t.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    observer = await channel.declare_queue("", exclusive=True)
    await observer.bind(exchange, "#")
    server = AuthenticatedGitServer(root, username=USER, token=TOKEN, tls=tls)
    elsewhere = AuthenticatedGitServer(root, username=USER, token=OTHER_TOKEN, tls=tls)
    # "refused": a package whose configured source takes another token than KILN_GIT_TOKEN.
    sources = {"demo": server.url("monorepo.git"), "refused": elsewhere.url("monorepo.git")}
    config = operator_config(tmp_path, tmp_path / "keys", sources)
    worker, log_file = start_worker(
        tmp_path, amqp_url, database_url, os.environ["PATH"], {"KILN_CONFIG_PATH": str(config)}
    )
    try:
        with server, elsewhere:
            requester = await Bus(amqp_url, source="gateway").connect()
            builds = {}
            for name, url in sources.items():
                builds[name] = str(uuid.uuid4())
                event = BuildRequested(
                    package=name,
                    source=Source(repo_url=url, ref="refs/heads/main", commit=commit),
                    options=Options(platforms=("linux/amd64",)),
                )
                await requester.emit(event, build_id=builds[name], package=name)
            # Not in version_map: named after the branch it forked from (develop: meridian).
            builds["feature"] = str(uuid.uuid4())
            event = BuildRequested(
                package="demo",
                source=Source(repo_url=sources["demo"], ref="refs/heads/bugfix/login", commit=feature),
                options=Options(platforms=("linux/amd64",)),
            )
            await requester.emit(event, build_id=builds["feature"], package="demo")
            await requester.stop(grace_s=5)
            events = await collect(observer, set(builds.values()), finished_or_imaged)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        finally:
            worker.kill()
        await connection.close()

    builds["private"] = builds["demo"]

    def stage(build: str, name: str) -> dict:
        return next(
            b["data"]
            for k, b in events[builds[build]]
            if k == "stage.finished" and b["data"]["stage"] == name
        )

    assert [stage("private", s)["status"] for s in ("config", "keys", "compile")] == ["succeeded"] * 3
    completed = next(b["data"] for k, b in events[builds["private"]] if k == "compile.completed")
    assert completed["ok"] and completed["source_digest"]
    assert sum(k.startswith("image.requested.amd64") for k, _ in events[builds["private"]]) == 4

    def repositories(build: str) -> set[str]:
        return {
            b["data"]["repository"].rsplit("/", 1)[1]
            for k, b in events[builds[build]]
            if k.startswith("image.requested.")
        }

    assert repositories("private") and all(r.startswith("axion-") for r in repositories("private"))
    assert repositories("feature") and all(r.startswith("meridian-") for r in repositories("feature"))
    assert stage("feature", "config")["detail"]["version"] == "meridian"
    assert any(r.authorized for r in server.requests)

    refused = stage("refused", "config")
    assert refused["status"] == "failed"
    assert f"{elsewhere.url('monorepo.git')} refused the token in KILN_GIT_TOKEN" in refused["error"]
    assert any(k == "build.finished" for k, _ in events[builds["refused"]])
    assert any(r.user == USER and not r.authorized for r in elsewhere.requests)

    logs = log_file.read_text()
    assert f"build {builds['private']}: compiled" in logs  # the worker did log about its builds
    argv = argv_log.read_text()
    # the worker's git ran through the recorder: three checkouts, and the feature branch's history
    assert argv.count(" fetch ") == 4 and "--filter=tree:0 --unshallow" in argv, argv
    for where, text in {
        "events": json.dumps(events),
        "worker log": logs,
        "git argv": argv,
        "git trace (child processes)": trace_log.read_text(),
        "requests seen by the servers": " ".join(r.target for r in server.requests + elsewhere.requests),
    }.items():
        assert TOKEN not in text, f"the token leaked into {where}"
