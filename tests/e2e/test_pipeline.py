"""The quick start's flow for real: a signed Bitbucket push of the example package goes through
every service, and every trace it should leave is checked — the rows of every run-history table,
both platforms' images and the multi-arch index in the registry, healthy containers, the email,
and a CDEvents feed that validates. Then a one-file change rebuilds exactly one module."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import subprocess
import sys
import time

import aio_pika
import docker
import httpx
import pytest
from sqlalchemy import func, select

from scripts.stack import example
from services.reporter.cdevents import validate as validate_cdevent
from services.reporter.cdevents.cloudevents import cdevent_of
from shared.db import make_engine, make_sessions
from shared.db.models import (
    Audit,
    BuildCompile,
    BuildCompileSet,
    BuildImage,
    BuildRun,
    BuildScan,
    BuildStep,
    EventLog,
)
from shared.registry import RegistryClient
from shared.settings import KilnSettings

pytestmark = pytest.mark.e2e
SERVICES = ("report", "scheduler", "storage-worker", "webhook")
PLATFORMS = ("linux/amd64", "linux/arm64")
# CDEvents kinds the feed must carry (the type without its schema version).
CDEVENT_KINDS = {
    "dev.cdevents.pipelinerun.queued",
    "dev.cdevents.pipelinerun.started",
    "dev.cdevents.pipelinerun.finished",
    "dev.cdevents.taskrun.started",
    "dev.cdevents.taskrun.finished",
    "dev.cdevents.artifact.packaged",
    "dev.cdevents.artifact.published",
    "dev.cdevents.artifact.signed",
    "dev.cdevents.service.deployed",
}


async def declare_feed(amqp_url: str, name: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange("kiln.cdevents", aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(name, durable=True)
        await queue.bind(exchange, "#")


async def drain_feed(amqp_url: str, name: str) -> list[dict]:
    connection = await aio_pika.connect(amqp_url)
    events = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(name)
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            # CloudEvents structured mode: the CDEvent is the CloudEvent's data.
            assert message.content_type == "application/cloudevents+json"
            events.append(cdevent_of(json.loads(message.body)))
    return events


@pytest.fixture(scope="module")
def first_build(stack):
    asyncio.run(declare_feed(stack.amqp_url, "e2e-cdevents"))
    started = time.monotonic()
    (build_id,) = example.trigger(stack)
    status = example.follow(stack, build_id, timeout_s=1200)
    print(f"\nend-to-end wall time, cold: {time.monotonic() - started:.1f}s")
    assert status == "succeeded", f"see the service logs in {stack.state / 'logs'}"
    return build_id


@pytest.fixture(scope="module")
def sessions(stack):
    engine = make_engine(stack.database_url)
    yield make_sessions(engine)
    engine.dispose()


def test_run_history_has_every_row(stack, first_build, sessions):
    with sessions() as s:
        run = s.execute(select(BuildRun).where(BuildRun.build_id == first_build)).scalar_one()
        assert (run.status, run.package, run.trigger_kind) == ("succeeded", "demo", "bitbucket-cloud")
        assert run.platforms == list(PLATFORMS) and run.host_arch and run.build_number >= 1
        steps = {
            (r.stage, r.target, r.platform): r.status
            for r in s.scalars(select(BuildStep).filter_by(build_id=first_build))
        }
        for stage in ("config", "keys", "compile", "deploy", "verify"):
            assert steps[(stage, "", "")] == "succeeded", stage
        for stage in ("image", "push", "scan"):
            for service in SERVICES:
                for platform in PLATFORMS:
                    assert steps[(stage, service, platform)] == "succeeded", (stage, service, platform)
        modules = s.scalars(select(BuildCompile).filter_by(build_id=first_build)).all()
        assert modules and all(m.status in ("ok", "cached") for m in modules)
        assert {m.platform for m in modules} == set(PLATFORMS)
        sets = s.scalars(select(BuildCompileSet).filter_by(build_id=first_build)).all()
        assert {(x.factory, x.platform) for x in sets} == {
            (f, p) for f in ("core", "report", "storage", "webhook") for p in PLATFORMS
        }
        images = s.scalars(select(BuildImage).filter_by(build_id=first_build)).all()
        per_platform = [i for i in images if i.platform in PLATFORMS]
        assert {(i.target, i.platform) for i in per_platform} == {(t, p) for t in SERVICES for p in PLATFORMS}
        assert all(i.digest.startswith("sha256:") and i.size_bytes > 0 for i in per_platform)
        indexes = [i for i in images if i.platform not in PLATFORMS]  # one multi-arch index per service
        assert sorted(i.target for i in indexes) == sorted(SERVICES)
        scans = s.scalars(select(BuildScan).filter_by(build_id=first_build)).all()
        assert len(scans) == 8 and {x.verdict for x in scans} == {"pass"}
        ids = s.scalars(select(EventLog.event_id).filter_by(build_id=first_build)).all()
        assert len(ids) == len(set(ids)) > 50
        assert (
            s.scalar(
                select(func.count())
                .select_from(EventLog)
                .filter_by(build_id=first_build, routing_key="build.finished")
            )
            == 1
        )


def test_audit_of_the_build_is_recorded(stack, first_build, sessions):
    env = {**stack.service_env()}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.scanner",
            "audit",
            "secrets",
            "--path",
            str(stack.repo),
            "--build-id",
            first_build,
            "--package",
            "demo",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with sessions() as s:
            audits = s.scalars(select(Audit).filter_by(build_id=first_build)).all()
        if audits:
            break
        time.sleep(1)
    assert [a.mode for a in audits] == ["secrets"]


def test_registry_has_both_platforms_and_the_index(stack, first_build, sessions):
    with sessions() as s:
        number = s.execute(select(BuildRun.build_number).filter_by(build_id=first_build)).scalar_one()
    registry = RegistryClient.from_settings(
        KilnSettings(
            **{
                "registry_url": stack.env["KILN_REGISTRY_URL"],
                "registry_username": stack.env["KILN_REGISTRY_USERNAME"],
                "registry_password": stack.env["KILN_REGISTRY_PASSWORD"],
            }
        )
    )
    with registry:
        for service in SERVICES:
            repo = f"kiln/axion-{service}-demo"
            assert f"b{number}" in registry.list_tags(repo)
            assert f"b{number}" in registry.list_tags(repo + "-arm")
            media_type, _, body = registry.get_manifest(repo, f"b{number}-multiarch")
            assert media_type == "application/vnd.oci.image.index.v1+json"
            platforms = {
                f"{m['platform']['os']}/{m['platform']['architecture']}"
                for m in json.loads(body)["manifests"]
            }
            assert platforms == set(PLATFORMS)


def test_deployed_containers_are_healthy(stack, first_build):
    client = docker.from_env()
    webhook = client.containers.get(f"{stack.prefix}demo-webhook")
    assert webhook.attrs["State"]["Health"]["Status"] in ("healthy", "starting")
    for service in ("scheduler", "storage-worker", "report"):
        assert client.containers.get(f"{stack.prefix}demo-{service}").status == "running"


def test_every_worker_answers_its_probe_port(stack, first_build):
    """KILN_HEALTH_PORT is what the Helm chart's and compose's probes call on every worker."""
    probed = {p.name: p.env["KILN_HEALTH_PORT"] for p in stack.process_table() if "KILN_HEALTH_PORT" in p.env}
    assert set(probed) == set(stack.workers)  # every Kiln process but the gateway (shared.processes)
    assert {"compiler", "imager-amd64", "imager-arm64", "scanner", "attester", "deployer"} <= set(probed)
    for name, port in probed.items():
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200, name
    assert stack.not_ready() == []


def test_report_email_arrived_with_html_and_text(stack, first_build):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(stack.mail_dir.glob("*succeeded*.eml")):
        time.sleep(1)
    (eml,) = stack.mail_dir.glob("*succeeded*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert "demo" in message["Subject"] and "dev@example.com" in message["To"]
    assert "Images per service" in message.get_body(preferencelist=("html",)).get_content()
    assert "succeeded" in message.get_body(preferencelist=("plain",)).get_content().lower()


def test_cdevents_feed_is_valid(stack, first_build):
    time.sleep(3)  # the feed is published after the history; let the last ones land
    events = asyncio.run(drain_feed(stack.amqp_url, "e2e-cdevents"))
    for event in events:
        validate_cdevent(event)
    assert {e["context"]["type"].rsplit(".", 3)[0] for e in events} >= CDEVENT_KINDS


def test_every_image_of_the_build_is_attested_and_verifies(stack, first_build, sessions):
    """Issue #18: for every pushed digest (and each multi-arch index) the registry holds an SBOM,
    a GPG simple signature the containers policy accepts, a cosign-format signature and DSSE-signed
    SLSA provenance whose subject is that digest and whose source commit is the build's. Checked
    through the user's command, `kiln verify <image>` (python -m services.attester verify)."""
    with sessions() as s:
        run = s.execute(select(BuildRun).where(BuildRun.build_id == first_build)).scalar_one()
        images = s.scalars(select(BuildImage).filter_by(build_id=first_build)).all()
        attested = s.scalars(select(BuildStep).filter_by(build_id=first_build, stage="attest")).all()
    assert {(a.target, a.platform, a.status) for a in attested if a.platform} >= {
        (t, p, "succeeded") for t in SERVICES for p in PLATFORMS
    }
    for image in images:
        reference = f"{image.repository}@{image.digest}"
        result = subprocess.run(
            [sys.executable, "-m", "cli", "verify", reference],
            capture_output=True,
            text=True,
            env={**stack.service_env(), "PATH": os.environ["PATH"]},
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "FAIL" not in result.stdout
        assert run.commit_sha and f"@ {run.commit_sha}" in result.stdout, result.stdout


def test_one_file_change_recompiles_one_module(stack, first_build, sessions):
    started = time.monotonic()
    (build_id,) = example.trigger(stack, touch="core/text.py")
    assert example.follow(stack, build_id, timeout_s=900) == "succeeded"
    print(f"\nend-to-end wall time after a one-file change: {time.monotonic() - started:.1f}s")
    with sessions() as s:
        modules = s.scalars(select(BuildCompile).filter_by(build_id=build_id)).all()
    for platform in PLATFORMS:
        recompiled = [m.module for m in modules if m.platform == platform and m.status == "ok"]
        assert recompiled == ["core.text"], (platform, recompiled)


# Each combination of the skip options reaches build.finished (a skipped push used to leave the
# gate waiting for image.pushed forever). amd64 only: the combinations, not the platforms, differ.
# skip_deploy alone and skip_compile alone are the gate's and the compiler's own tests
# (tests/integration/test_deployer_gate_bus.py, tests/unit/test_compiler_service.py).
SKIP_COMBINATIONS = [
    ("skip_push",),
    ("skip_compile", "skip_push", "skip_deploy"),
]


@pytest.mark.parametrize("skips", SKIP_COMBINATIONS, ids="+".join)
def test_every_skip_combination_ends(stack, first_build, sessions, skips):
    token = stack.secrets()["api_token"]
    response = httpx.post(
        f"{stack.gateway_url}/builds",
        json={"package": "demo", "platform": "linux/amd64", **dict.fromkeys(skips, True)},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    (build_id,) = response.json()["build_ids"]
    assert example.follow(stack, build_id, timeout_s=600) == "succeeded"
    with sessions() as s:
        keys = set(s.scalars(select(EventLog.routing_key).filter_by(build_id=build_id)))
        steps = {(st.stage, st.status) for st in s.scalars(select(BuildStep).filter_by(build_id=build_id))}
    assert "build.finished" in keys
    assert ("image", "succeeded") in steps  # every combination still builds and proves the images
    if "skip_push" in skips:
        assert "image.pushed" not in keys and ("push", "skipped") in steps
        assert not {stage for stage, _ in steps} & {"scan", "attest", "deploy"}, steps
    else:
        assert "image.pushed" in keys
    if "skip_deploy" in skips or "skip_push" in skips:
        assert "deploy.completed" not in keys
    if "skip_compile" in skips:
        with sessions() as s:
            recompiled = s.scalars(select(BuildCompile).filter_by(build_id=build_id, status="ok")).all()
        assert recompiled == [], [m.module for m in recompiled]


# -- replay reruns: the user's path, `kiln replay <build> --from <stage>`, on the real stack -----


def kiln_cli(stack, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess:
    env = os.environ | {"KILN_GATEWAY_URL": stack.gateway_url, "KILN_TOKEN": stack.secrets()["api_token"]}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True, timeout=timeout_s
    )


def events_of_attempt(sessions, build_id: str, attempt: int) -> list[tuple[str, str]]:
    with sessions() as s:
        rows = s.execute(
            select(EventLog.routing_key, EventLog.body).filter_by(build_id=build_id, attempt=attempt)
        ).all()
    return [(key, body) for key, body in rows]


def container_ids(stack) -> dict[str, str]:
    client = docker.from_env()
    return {s: client.containers.get(f"{stack.prefix}demo-{s}").id for s in SERVICES}


# stage -> the stage.started it must cause again, once per image of the build (or once)
# A replay from image rebuilds with the real imager in tests/integration/test_imager_pipeline.py
# (here it would rebuild 4 arm64 images under QEMU, ~50 s).
REPLAYS = [("deploy", "deploy", 1), ("scan", "scan", 8)]


@pytest.mark.parametrize(("stage", "reruns", "times"), REPLAYS, ids=[r[0] for r in REPLAYS])
def test_replay_reruns_the_stage_and_everything_after_it(stack, first_build, sessions, stage, reruns, times):
    before = container_ids(stack)
    started = time.monotonic()
    result = kiln_cli(stack, "replay", first_build, "--from", stage)
    took = time.monotonic() - started
    assert result.returncode == 0, (result.stdout, result.stderr)
    (attempt,) = {int(word) for line in result.stdout.splitlines() if line.startswith("attempt ")
                  for word in line.split()[1:2]}  # fmt: skip
    assert result.stdout.rstrip().splitlines()[-1].startswith("build succeeded"), result.stdout
    # The CLI saw build.finished on the gateway's live stream; the reporter writes the history
    # in batches, a moment later.
    deadline = time.monotonic() + 30
    while "build.finished" not in (keys := [k for k, _ in events_of_attempt(sessions, first_build, attempt)]):
        assert time.monotonic() < deadline, f"attempt {attempt}'s build.finished not in event_log: {keys}"
        time.sleep(0.5)
    starts = [json.loads(body) for key, body in events_of_attempt(sessions, first_build, attempt)
              if key == "stage.started"]  # fmt: skip
    assert sum(1 for e in starts if e["data"]["stage"] == reruns) == times, keys
    assert "build.finished" in keys and "deploy.completed" in keys  # and everything after it ran
    # The compose substrate recreates a container only when what it is made of changed (as
    # `docker compose up` does); a replay deploys the same release, so its containers may stay.
    # Every service still runs the build's image. (A replay forcing recreation: not built yet.)
    after = container_ids(stack)
    assert set(after) == set(SERVICES) and set(before) == set(SERVICES)
    with sessions() as s:
        run = s.scalars(select(BuildRun).filter_by(build_id=first_build)).one()
    assert run.status == "succeeded"
    print(f"\nreplay --from {stage}: attempt {attempt} in {took:.1f}s")


def test_replay_only_reruns_that_stage_and_nothing_after_it(stack, first_build, sessions):
    """`kiln replay <build> --only scan`: every image is rescanned; attest, deploy and verify do
    not run again (the containers are the same), and the attempt still ends."""
    before = container_ids(stack)
    result = kiln_cli(stack, "replay", first_build, "--only", "scan")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "reruns only scan" in result.stdout and "build succeeded" in result.stdout, result.stdout
    (attempt,) = {int(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("attempt ")}
    deadline = time.monotonic() + 30
    while "build.finished" not in (keys := [k for k, _ in events_of_attempt(sessions, first_build, attempt)]):
        assert time.monotonic() < deadline, f"attempt {attempt}'s build.finished not in event_log: {keys}"
        time.sleep(0.5)
    events = events_of_attempt(sessions, first_build, attempt)
    started = [json.loads(body)["data"]["stage"] for key, body in events if key == "stage.started"]
    assert started.count("scan") == 8 and not {"attest", "deploy", "verify"} & set(started), started
    assert "deploy.completed" not in keys
    assert container_ids(stack) == before


def test_replay_of_a_stage_that_never_ran_is_refused(stack, first_build):
    """The example package has no docs stage: its trigger (compile.completed) is stored, but
    republishing it would rerun the deploy, not docs. Refused, nothing published."""
    result = kiln_cli(stack, "replay", first_build, "--from", "docs", timeout_s=60)
    assert result.returncode != 0 and "stage 'docs' never ran" in result.stderr, result.stderr
    assert "republished" not in result.stdout


def test_a_cancelled_build_replays_to_success_and_shows_both_attempts(stack, first_build, sessions):
    """`kiln cancel`, then `kiln replay` of the cancelled build: a cancel stops the attempt it was
    sent for, not the build's future. amd64, compile reused, no deploy: the path, not the work."""
    token = stack.secrets()["api_token"]
    response = httpx.post(
        f"{stack.gateway_url}/builds",
        json={"package": "demo", "platform": "linux/amd64", "skip_compile": True, "skip_deploy": True},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    (build_id,) = response.json()["build_ids"]
    cancelled = kiln_cli(stack, "cancel", build_id, "--reason", "wrong branch", timeout_s=60)
    assert cancelled.returncode == 0 and "cancel of build" in cancelled.stdout, cancelled.stderr
    assert example.follow(stack, build_id, timeout_s=300) == "cancelled"
    result = kiln_cli(stack, "replay", build_id)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "attempt 2 of build" in result.stdout and "build succeeded" in result.stdout, result.stdout
    with sessions() as s:
        pushed = s.scalars(select(EventLog.routing_key).filter_by(build_id=build_id, attempt=2)).all()
    assert "image.pushed" in pushed  # attempt 2 did the work the cancel had stopped
    deadline = time.monotonic() + 30
    while True:  # the reporter writes the history in batches, a moment after the CLI saw the end
        status = kiln_cli(stack, "status", build_id, timeout_s=60)
        if "#2   succeeded" in status.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status.returncode == 0, status.stdout + status.stderr
    lines = status.stdout.splitlines()
    attempts = [
        line.split()[:2] for line in lines[lines.index(next(x for x in lines if "attempts (" in x)) + 1 :]
    ]
    assert attempts == [["#2", "succeeded"], ["#1", "cancelled"]], status.stdout


# -- rollback: `kiln rollback demo --to <number>` redeploys that build's digests ------------------


def running_digests(stack) -> dict[str, str]:
    """service -> the digest its running container was created from: the reference the engine
    created it with, which the engine's image carries among its registry digests."""
    client = docker.from_env()
    digests = {}
    for service in SERVICES:
        container = client.containers.get(f"{stack.prefix}demo-{service}")
        reference = container.attrs["Config"]["Image"]
        assert container.status == "running", (service, container.status)
        assert reference in container.image.attrs.get("RepoDigests", []), (service, reference)
        digests[service] = reference.partition("@")[2]
    return digests


def pushed_digests(sessions, build_id: str) -> dict[str, str]:
    with sessions() as s:
        rows = s.scalars(
            select(BuildImage).filter_by(build_id=build_id, platform="linux/amd64", status="pushed")
        )
        return {row.target: row.digest for row in rows}


def deployed_builds(sessions) -> list[BuildRun]:
    """demo's builds that built images and deployed them, oldest first."""
    with sessions() as s:
        runs = s.scalars(
            select(BuildRun).filter_by(package="demo", status="succeeded").order_by(BuildRun.build_number)
        )
        deployed = set(s.scalars(select(BuildStep.build_id).filter_by(stage="deploy", status="succeeded")))
        return [run for run in runs if run.build_id in deployed and run.trigger_kind != "rollback"]


def test_rollback_redeploys_an_earlier_builds_digests(stack, first_build, sessions):
    """Two builds deployed (the cold one and the one-file change, made above), then a rollback to
    each in turn: the running containers are created from exactly that build's pushed digests."""
    builds = deployed_builds(sessions)
    if len(builds) < 2:  # this test alone: a second build, of a new (empty) commit; its images
        # differ from the first's (each carries its build id), nothing is recompiled
        (build_id,) = example.trigger(stack)
        status = example.follow(stack, build_id, timeout_s=900)
        assert status == "succeeded", kiln_cli(stack, "logs", build_id, timeout_s=60).stdout[-3000:]
        builds = deployed_builds(sessions)
    first, second = builds[0], builds[-1]
    assert first.build_id == first_build
    digests = {run.build_number: pushed_digests(sessions, run.build_id) for run in (first, second)}
    assert set(digests[first.build_number]) == set(SERVICES) == set(digests[second.build_number])
    assert digests[first.build_number] != digests[second.build_number], "the one-file change rebuilt nothing"
    took = {}
    for run in (second, first):  # whatever runs now (a replay redeployed build 1): to 2, then back to 1
        started = time.monotonic()
        result = kiln_cli(stack, "rollback", "demo", "--to", str(run.build_number))
        took[run.build_number] = time.monotonic() - started
        assert result.returncode == 0, (result.stdout, result.stderr)
        lines = result.stdout.rstrip().splitlines()
        assert lines[0].startswith(
            f"rollback of demo to build #{run.build_number} ({run.build_id}) started as build "
        )
        assert lines[-1].startswith("build succeeded"), result.stdout
        assert running_digests(stack) == digests[run.build_number]
    rollback_id = lines[0].split()[-2]
    deadline = time.monotonic() + 30  # the reporter writes the history in batches
    while True:
        with sessions() as s:
            row = s.scalars(select(BuildRun).filter_by(build_id=rollback_id)).one_or_none()
        if row is not None and row.status == "succeeded":
            break
        assert time.monotonic() < deadline, f"rollback run {rollback_id} not recorded as succeeded: {row}"
        time.sleep(0.5)
    assert (row.trigger_kind, row.options["rollback_to"], row.commit_sha) == (
        "rollback",
        first.build_number,
        first.commit_sha,
    )
    assert row.build_number > second.build_number
    status = kiln_cli(stack, "status", rollback_id, timeout_s=60)
    assert f"rollback to #{first.build_number} ({first.build_id})" in status.stdout, status.stdout
    times = ", ".join(f"to #{number}: {seconds:.1f}s" for number, seconds in took.items())
    print(f"\nkiln rollback {times}")
