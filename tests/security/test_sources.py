"""Finding 2 of issue #13: the clone URL came from the payload, and the git token went to any host.

Now the operator config alone says where a package's code is (shared/sources.py) and which hosts
get the token. Each test is the attack on the real parts: a real gateway on RabbitMQ and MariaDB,
real git http-backend servers (plain http and https) that record what they received, the real
compiler worker process, and the deployer's docs stage with the real GitSource.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import aio_pika
import pytest
from pydantic import SecretStr

from services.deployer.docs.stage import DocsStage
from services.deployer.ports import DocsFailed
from shared.bus import Bus
from shared.bus import topology as t
from shared.config.sections import DocsConfig
from shared.events import BuildRequested
from shared.events.build import Options, Source
from shared.git_source import FetchFailed, GitSource
from shared.sources import SourceGuard, SourceSettings
from tests.integration.git_http_support import AuthenticatedGitServer, git, make_bare_repository, self_signed
from tests.integration.test_compiler_private_repository import (  # the compiler worker's harness
    collect,
    finished_or_imaged,
    private_monorepo,  # noqa: F401 (a fixture)
    start_worker,
)
from tests.integration.test_compiler_private_repository import operator_config as compiler_config
from tests.security.compile_support import stop
from tests.security.sources_support import (
    api,
    build_requests,
    deliver,
    operator_config,
    parsed,
    real_gateway,
)
from tests.unit.test_gateway_payloads import cloud_change, cloud_push, commit_hash, github_push

pytestmark = pytest.mark.integration

TOKEN = "ghp_kilnSourcesT0ken_0f1e2d3c4b5a69788796"  # made up; it must reach no server it should not
USER = "x-access-token"
ATTACKER = "https://attacker.invalid/evil/monorepo.git"
GITHUB = {"repository": "example/monorepo", "provider": "github", "branches": ["*"]}


@pytest.fixture
def pushed(tmp_path) -> tuple[Path, str]:
    """A bare repository tmp/repos/app.git (main has one commit): (repos root, commit)."""
    work = tmp_path / "app"
    work.mkdir()
    (work / "README").write_text("the operator's code\n")
    root = tmp_path / "repos"
    root.mkdir()
    make_bare_repository(root, "app.git", work)
    return root, git("rev-parse", "HEAD", cwd=work)


@pytest.fixture
def tls(tmp_path, monkeypatch) -> tuple[Path, Path]:
    cert, key = self_signed(tmp_path / "tls")
    monkeypatch.setenv("GIT_SSL_CAINFO", str(cert))  # git trusts the test servers, nothing else changes
    return cert, key


def guard_for(webhooks: dict, **source_settings) -> SourceGuard:
    config = parsed(operator_config({"demo": webhooks}))
    return SourceGuard(SourceSettings(**source_settings), lambda: config)


# -- the gateway: a payload names the repository, never the URL -----------------------------------


async def test_a_signed_github_push_naming_an_attackers_clone_url_builds_nothing(amqp_url, database_url):
    config = parsed(operator_config({"demo": GITHUB}))
    forged = github_push("refs/heads/main", commit_hash())
    forged["repository"]["clone_url"] = ATTACKER
    async with build_requests(amqp_url) as requested, real_gateway(amqp_url, database_url, config) as gw:
        reply = await deliver(gw, "github", "push", forged)
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        assert answer["status"] == "ignored"
        assert ATTACKER in answer["reason"] and "https://github.com/example/monorepo.git" in answer["reason"]
        assert await requested.take() == []

        # The genuine push of the same repository builds, from the configured source.
        genuine = github_push("refs/heads/main", commit_hash())
        reply = await deliver(gw, "github", "push", genuine)
        assert reply.status_code == 202, reply.text
        (event,) = [e.event() for e in await requested.take()]
        assert event.source.repo_url == "https://github.com/example/monorepo.git"


async def test_a_push_builds_the_configured_mirror_whatever_the_payload_says(amqp_url, database_url):
    mirror = "https://git.internal.example/mirrors/monorepo.git"
    config = parsed(operator_config({"demo": {**GITHUB, "clone_url": mirror}}))
    async with build_requests(amqp_url) as requested, real_gateway(amqp_url, database_url, config) as gw:
        reply = await deliver(gw, "github", "push", github_push("refs/heads/develop", commit_hash()))
        assert reply.status_code == 202, reply.text
        (event,) = [e.event() for e in await requested.take()]
        assert event.source.repo_url == mirror


async def test_another_repository_or_another_providers_route_builds_nothing(amqp_url, database_url):
    config = parsed(operator_config({"demo": GITHUB}))
    async with build_requests(amqp_url) as requested, real_gateway(amqp_url, database_url, config) as gw:
        other = await deliver(
            gw, "github", "push", github_push("refs/heads/main", commit_hash(), full_name="evil/fork")
        )
        assert other.status_code == 200 and other.json()["status"] == "ignored"
        assert "'evil/fork' is not configured for any package" in other.json()["reason"]

        # Same repository name on Bitbucket Cloud (someone else's workspace): demo is on GitHub.
        cloud = await deliver(
            gw, "bitbucket-cloud", "repo:push", cloud_push(cloud_change("main", commit_hash()))
        )
        assert cloud.status_code == 200 and cloud.json()["status"] == "ignored"
        assert "takes pushes from github only (webhooks.provider)" in cloud.json()["reason"]
        assert await requested.take() == []


# -- the API: commit is 40 hex, repo_url only the configured one ----------------------------------


async def test_the_api_refuses_a_bad_commit_and_a_foreign_repo_url(amqp_url, database_url):
    config = parsed(operator_config({"demo": GITHUB}))
    async with build_requests(amqp_url) as requested, real_gateway(amqp_url, database_url, config) as gw:
        for commit in ("abc123", "--upload-pack=touch /tmp/x", "G" * 40, "a" * 41):
            reply = await gw.post("/builds", json={"package": "demo", "commit": commit}, headers=api())
            assert reply.status_code == 422, (commit, reply.text)
            assert reply.json()["detail"][0]["loc"][-1] == "commit"
        reply = await gw.post("/builds", json={"package": "demo", "repo_url": ATTACKER}, headers=api())
        assert reply.status_code == 422 and reply.json()["detail"].startswith("repo_url: builds of 'demo'")
        assert await requested.take() == []

        same = {"package": "demo", "repo_url": "https://github.com/example/monorepo.git", "commit": "c" * 40}
        reply = await gw.post("/builds", json=same, headers=api())
        assert reply.status_code == 202, reply.text
        (event,) = [e.event() for e in await requested.take()]
        assert (event.source.repo_url, event.source.commit) == (same["repo_url"], same["commit"])


async def test_the_api_resolves_the_commit_from_the_configured_source(amqp_url, database_url, pushed):
    root, commit = pushed
    local = {"repository": "example/monorepo", "clone_url": f"file://{root / 'app.git'}", "allow_file": True}
    config = parsed(operator_config({"demo": local}))
    async with build_requests(amqp_url) as requested, real_gateway(amqp_url, database_url, config) as gw:
        reply = await gw.post("/builds", json={"package": "demo", "ref": "main"}, headers=api())
        assert reply.status_code == 202, reply.text
        (event,) = [e.event() for e in await requested.take()]
        assert (event.source.repo_url, event.source.ref, event.source.commit) == (
            local["clone_url"],
            "refs/heads/main",
            commit,
        )
        missing = await gw.post("/builds", json={"package": "demo", "ref": "nope"}, headers=api())
        assert missing.status_code == 422 and "refs/heads/nope does not exist" in missing.json()["detail"]
        # No ref: the source's default branch (what its HEAD names, as `kiln pipeline demo` sends it).
        default = await gw.post("/builds", json={"package": "demo"}, headers=api())
        assert default.status_code == 202, default.text
        (event,) = [e.event() for e in await requested.take()]
        assert (event.source.ref, event.source.commit) == ("refs/heads/main", commit)

    # Without allow_file the same source is refused, naming the key that allows it.
    refused = parsed(operator_config({"demo": {**local, "allow_file": False}}))
    async with real_gateway(amqp_url, database_url, refused) as gw:
        reply = await gw.post("/builds", json={"package": "demo", "ref": "main"}, headers=api())
        assert (
            reply.status_code == 422 and "packages.demo.webhooks.allow_file: true" in reply.json()["detail"]
        )


# -- the token: https only, listed hosts only, no redirect ---------------------------------------


def test_the_token_never_goes_over_plain_http(pushed, tmp_path):
    root, commit = pushed
    with AuthenticatedGitServer(root, username=USER, token=TOKEN) as server:
        url = server.url("app.git")
        guard = guard_for({"repository": "example/monorepo", "clone_url": url, "allow_http": True})
        fetcher = GitSource(token=SecretStr(TOKEN), username=USER, token_hosts={"127.0.0.1"}, guard=guard)
        with pytest.raises(FetchFailed) as failure:
            fetcher.fetch(
                Source(repo_url=url, ref="refs/heads/main", commit=commit), tmp_path / "w", package="demo"
            )
    assert server.requests and server.requests[0].user is None  # it asked (401) ...
    assert server.passwords_seen() == []  # ... and was never answered with the token
    message = str(failure.value)
    assert "KILN_GIT_TOKEN is sent only over https to the hosts in KILN_GIT_TOKEN_HOSTS" in message
    assert TOKEN not in message

    # And plain http is no source at all unless the operator allows it for the package.
    strict = GitSource(
        token=SecretStr(TOKEN), guard=guard_for({"repository": "example/monorepo", "clone_url": url})
    )
    with pytest.raises(FetchFailed, match=r"set packages\.demo\.webhooks\.allow_http: true"):
        strict.fetch(Source(repo_url=url, commit=commit), tmp_path / "w2", package="demo")


def test_the_token_goes_over_https_only_to_a_listed_host(pushed, tls, tmp_path):
    root, commit = pushed
    with AuthenticatedGitServer(root, username=USER, token=TOKEN, tls=tls, host="localhost") as unlisted:
        url = unlisted.url("app.git")
        guard = guard_for({"repository": "example/monorepo", "clone_url": url})
        fetcher = GitSource(token=SecretStr(TOKEN), username=USER, token_hosts={"127.0.0.1"}, guard=guard)
        with pytest.raises(FetchFailed) as failure:
            fetcher.fetch(Source(repo_url=url, commit=commit), tmp_path / "w", package="demo")
    assert unlisted.requests and unlisted.passwords_seen() == []
    assert f"localhost:{unlisted.port} over https is not one of them" in str(failure.value)

    # The same server under the listed name gets it, and the fetch works (the control).
    with AuthenticatedGitServer(root, username=USER, token=TOKEN, tls=tls) as listed:
        url = listed.url("app.git")
        guard = guard_for({"repository": "example/monorepo", "clone_url": url})
        fetcher = GitSource(token=SecretStr(TOKEN), username=USER, token_hosts={"127.0.0.1"}, guard=guard)
        checkout = fetcher.fetch(Source(repo_url=url, commit=commit), tmp_path / "w2", package="demo")
    assert git("rev-parse", "HEAD", cwd=checkout) == commit
    assert TOKEN in listed.passwords_seen()


def test_a_redirect_does_not_take_the_token_to_another_host(pushed, tls, tmp_path):
    root, commit = pushed
    with (
        AuthenticatedGitServer(root, username=USER, token=TOKEN, tls=tls, host="localhost") as attacker,
        AuthenticatedGitServer(
            root, username=USER, token=TOKEN, tls=tls, redirect_to=f"https://localhost:{attacker.port}"
        ) as listed,
    ):
        url = listed.url("app.git")
        guard = guard_for({"repository": "example/monorepo", "clone_url": url})
        fetcher = GitSource(token=SecretStr(TOKEN), username=USER, token_hosts={"127.0.0.1"}, guard=guard)
        with pytest.raises(FetchFailed):
            fetcher.fetch(Source(repo_url=url, commit=commit), tmp_path / "w", package="demo")
    assert listed.requests  # git asked the configured host, which answered 301 ...
    assert attacker.requests == []  # ... and git did not follow it


# -- receivers: a forged build.requested names an attacker's URL in vain -------------------------


def test_the_docs_stage_fetches_only_the_configured_source(pushed, tls, tmp_path):
    root, commit = pushed
    with AuthenticatedGitServer(root, username=USER, token=TOKEN, tls=tls) as attacker:
        guard = guard_for(GITHUB, git_token_hosts="127.0.0.1")
        git_source = GitSource(token=SecretStr(TOKEN), token_hosts={"127.0.0.1"}, guard=guard)
        stage = DocsStage(fetch=git_source.fetch, publisher_for=lambda *_: None, env={})
        forged = Source(repo_url=attacker.url("app.git"), ref="refs/heads/main", commit=commit)
        with pytest.raises(DocsFailed) as failure:
            stage.run("demo", DocsConfig(), forged)
    assert attacker.requests == []
    assert "not its configured source (https://github.com/example/monorepo.git" in str(failure.value)


def test_git_never_sees_the_services_own_settings(pushed, tmp_path, monkeypatch):
    """The git child gets no KILN_* variable of the worker (its secrets among them)."""
    root, commit = pushed
    monkeypatch.setenv("KILN_REGISTRY_PASSWORD", "registry-secret-value-0123456789")
    seen = []

    def recording_run(command, **kwargs):
        seen.append(kwargs["env"])
        return subprocess.run(command, **kwargs)

    local = {"repository": "example/monorepo", "clone_url": f"file://{root / 'app.git'}", "allow_file": True}
    fetcher = GitSource(run=recording_run, guard=guard_for(local))
    fetcher.fetch(Source(repo_url=local["clone_url"], commit=commit), tmp_path / "w", package="demo")
    assert seen and all(not any(k.startswith("KILN_") for k in env) for env in seen)
    assert all(env["GIT_ALLOW_PROTOCOL"] == "file" for env in seen)


async def test_a_forged_build_requested_fails_at_config_in_the_real_compiler(
    private_monorepo,  # noqa: F811 (the fixture imported above)
    tls,
    tmp_path,
    amqp_url,
    database_url,
):
    """Someone who can publish on the bus names their own repository for package demo: the real
    compiler worker refuses to fetch it (the build fails at config with the reason), the attacker's
    server is never contacted, and the legitimate build published right after still runs."""
    root, commit = private_monorepo
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(t.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    observer = await channel.declare_queue("", exclusive=True)
    await observer.bind(exchange, "#")
    configured = AuthenticatedGitServer(root, username=USER, token=TOKEN, tls=tls)
    attacker = AuthenticatedGitServer(root, username=USER, token=TOKEN, tls=tls)
    config = compiler_config(tmp_path, tmp_path / "keys", {"demo": configured.url("monorepo.git")})
    extra = {"KILN_CONFIG_PATH": str(config), "KILN_GIT_TOKEN": TOKEN}
    worker, log_file = start_worker(tmp_path, amqp_url, database_url, os.environ["PATH"], extra)
    builds = {"forged": str(uuid.uuid4()), "legitimate": str(uuid.uuid4())}
    try:
        with configured, attacker:
            requester = await Bus(amqp_url, source="gateway").connect()
            for name, server in (("forged", attacker), ("legitimate", configured)):
                event = BuildRequested(
                    package="demo",
                    source=Source(repo_url=server.url("monorepo.git"), ref="refs/heads/main", commit=commit),
                    options=Options(platforms=("linux/amd64",)),
                )
                await requester.emit(event, build_id=builds[name], package="demo")
            await requester.stop(grace_s=5)
            events = await collect(observer, set(builds.values()), finished_or_imaged)
    finally:
        stop(worker)
        await connection.close()

    forged = [b["data"] for k, b in events[builds["forged"]] if k == "stage.finished"]
    assert [(s["stage"], s["status"]) for s in forged] == [("config", "failed")]  # once: not retried
    reason = forged[0]["error"]
    assert f"names source '{attacker.url('monorepo.git')}' for package 'demo'" in reason
    assert f"not its configured source ({configured.url('monorepo.git')}" in reason
    assert any(k == "build.finished" for k, _ in events[builds["forged"]])
    assert attacker.requests == []  # not even asked: no token, no fetch

    legitimate = {
        b["data"]["stage"]: b["data"]["status"]
        for k, b in events[builds["legitimate"]]
        if k == "stage.finished"
    }
    assert legitimate["config"] == "succeeded" and legitimate["compile"] == "succeeded"
    assert TOKEN in configured.passwords_seen()
    assert TOKEN not in log_file.read_text() and TOKEN not in json.dumps(events)


async def test_a_forged_build_requested_naming_a_host_directory_is_refused_by_the_real_compiler(
    tmp_path,
    amqp_url,
    database_url,
):
    """`source.path` (a directory on the compiler's host) is set by no API, but an event on the bus
    could name one: another package's checkout, the worker's own files. The real compiler worker
    builds a directory only when it is the package's configured local source (clone_url with
    allow_file); the forged one fails at config, and the configured one still builds."""
    import shutil

    import yaml

    from shared.config import generate_keys

    example = Path(__file__).resolve().parents[2] / "examples" / "monorepo"
    configured = tmp_path / "checkout"
    ignore = shutil.ignore_patterns(".ruff_cache", "__pycache__", "tests")
    shutil.copytree(example, configured, ignore=ignore)
    elsewhere = tmp_path / "another-checkout"
    shutil.copytree(configured, elsewhere)
    generate_keys(tmp_path / "keys", "demo")
    config = compiler_config(tmp_path, tmp_path / "keys", {"demo": str(configured)})
    raw = yaml.safe_load(config.read_text())
    raw["packages"]["demo"]["webhooks"]["allow_file"] = True
    config.write_text(yaml.safe_dump(raw))

    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(t.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    observer = await channel.declare_queue("", exclusive=True)
    await observer.bind(exchange, "#")
    worker, _ = start_worker(
        tmp_path, amqp_url, database_url, os.environ["PATH"], {"KILN_CONFIG_PATH": str(config)}
    )
    builds = {"forged": str(uuid.uuid4()), "legitimate": str(uuid.uuid4())}
    try:
        requester = await Bus(amqp_url, source="gateway").connect()
        for name, directory in (("forged", elsewhere), ("legitimate", configured)):
            event = BuildRequested(
                package="demo",
                source=Source(path=str(directory)),
                options=Options(platforms=("linux/amd64",)),
            )
            await requester.emit(event, build_id=builds[name], package="demo")
        await requester.stop(grace_s=5)
        events = await collect(observer, set(builds.values()), finished_or_imaged)
    finally:
        stop(worker)
        await connection.close()

    forged = [b["data"] for k, b in events[builds["forged"]] if k == "stage.finished"]
    assert [(s["stage"], s["status"]) for s in forged] == [("config", "failed")]
    assert f"names the directory '{elsewhere}' for package 'demo'" in forged[0]["error"]
    assert "allow_file: true in the operator config" in forged[0]["error"]
    legitimate = {
        b["data"]["stage"]: b["data"]["status"]
        for k, b in events[builds["legitimate"]]
        if k == "stage.finished"
    }
    assert legitimate["config"] == "succeeded" and legitimate["compile"] == "succeeded"
