"""The Axion-like example (examples/axion-like, 13 services on tiers of native wheels) through the
real stack, linux/amd64 only to keep CI short (`./kiln-dev up --package axion-like` builds both
platforms): a signed push is compiled, every image built, proven, pushed, scanned, attested,
deployed on the Docker Engine, verified through each service's JSON harness and mailed. Then a
branch whose config.yaml drops the factory `nlp` that `conversation` imports by a computed name:
static analysis cannot see it, the start-up proof fails that image naming the factory."""

from __future__ import annotations

import email
import email.policy
import json
import re
import time

import docker
import httpx
import pytest
from sqlalchemy import select

from scripts.stack import example
from scripts.stack.example import EXAMPLES, git
from shared.db import make_engine, make_sessions
from shared.db.models import BuildImage, BuildRun, BuildStep, EventLog
from tests.e2e.conftest import isolated_stack

pytestmark = pytest.mark.e2e
AXION = EXAMPLES["axion-like"]
SERVICES = (
    "ai", "conversation", "go", "import", "monitor", "mqtt", "report", "runtime", "scheduler", "sms",
    "web", "webhook", "workflow",
)  # fmt: skip
PLATFORM = "linux/amd64"
# conversation's factories in the example's config.yaml, and the variant branch's without nlp
KEPT = "factories: [core, dialog, httpapi, messaging, nlp]"
DROPPED = "factories: [core, dialog, httpapi, messaging]"


@pytest.fixture(scope="module")
def axion_stack(tmp_path_factory):
    overrides = {
        "KILN_PROVE_STAY_UP_S": "1",
        # the operator's environment narrows deployment.platforms (docs/configuration.md overrides)
        "KILN_DEPLOYMENT_PLATFORMS": f"[{PLATFORM}]",
    }
    with isolated_stack(tmp_path_factory.mktemp("axion"), AXION, overrides) as started:
        yield started


@pytest.fixture(scope="module")
def sessions(axion_stack):
    engine = make_engine(axion_stack.database_url)
    yield make_sessions(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def axion_build(axion_stack):
    started = time.monotonic()
    (build_id,) = example.trigger(axion_stack)
    status = example.follow(axion_stack, build_id, timeout_s=1500)
    print(f"\naxion-like end to end ({PLATFORM}, 13 services): {time.monotonic() - started:.1f}s")
    assert status == "succeeded", f"see the service logs in {axion_stack.state / 'logs'}"
    return build_id


def test_every_service_is_built_proven_pushed_scanned_and_deployed(axion_build, sessions):
    with sessions() as s:
        run = s.execute(select(BuildRun).where(BuildRun.build_id == axion_build)).scalar_one()
        steps = {
            (r.stage, r.target, r.platform): r
            for r in s.scalars(select(BuildStep).filter_by(build_id=axion_build))
        }
        images = s.scalars(select(BuildImage).filter_by(build_id=axion_build, platform=PLATFORM)).all()
    assert (run.status, run.package, run.platforms) == ("succeeded", "axion-like", [PLATFORM])
    for stage in ("config", "keys", "compile", "deploy", "verify"):
        assert steps[(stage, "", "")].status == "succeeded", stage
    for service in SERVICES:
        for stage in ("image", "push", "scan", "attest"):
            assert steps[(stage, service, PLATFORM)].status == "succeeded", (stage, service)
        # every service has a health path, workers on a port of their own: the proof waited for it
        # (on a machine that proved the same image content before, the imager reuses that proof)
        proof = steps[("image", service, PLATFORM)].detail["proof"]
        assert proof in ("/healthz answered", "/healthz answered (proven before, same content)"), service
    sizes = {i.target: i.size_bytes for i in images}
    assert set(sizes) == set(SERVICES)
    print(
        "image sizes (MB, compressed in the registry):",
        {k: round(v / 1e6, 1) for k, v in sorted(sizes.items())},
    )
    # tier full (numpy, lxml, Pillow, ...) is far bigger than tier minimal (orjson, pydantic-core)
    assert sizes["runtime"] > sizes["ai"] > sizes["monitor"]


def test_verify_gated_on_every_services_json_harness(axion_build, sessions):
    with sessions() as s:
        body = s.scalars(
            select(EventLog.body).filter_by(build_id=axion_build, routing_key="verify.completed")
        ).one()
    checks = {c["service"]: c for c in json.loads(body)["data"]["checks"]}
    assert set(checks) == set(SERVICES)
    for service, check in checks.items():
        assert check["healthy"] and check["pass_rate"] == 100.0, (service, check)
        assert check["url"].endswith("/status"), service


def test_deployed_services_answer_on_their_ports(axion_stack, axion_build):
    client = docker.from_env()
    containers = {c.labels["dev.kiln.service"]: c for c in client.containers.list(
        filters={"label": f"dev.kiln.stack={axion_stack.prefix}{AXION.package}"})}  # fmt: skip
    assert set(containers) == set(SERVICES)
    address = {name: next(iter(c.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
               for name, c in containers.items()}  # fmt: skip
    report = f"http://{address['report']}:8082"
    assert "<table>" in httpx.get(f"{report}/status?format=html", timeout=10).text
    assert httpx.get(f"{report}/status.png", timeout=10).content.startswith(b"\x89PNG")
    cpu = httpx.get(f"http://{address['ai']}:8085/cpu", timeout=10).json()
    assert cpu["available"] is True  # amd64: cpufeature is in tier ai here (arm_exclude only on arm64)
    said = httpx.post(f"http://{address['conversation']}:8084/say", json={"text": "hello"}, timeout=10)
    assert said.json()["engine"] == "rules"
    volumes = {m["Name"] for m in containers["import"].attrs["Mounts"] if m["Type"] == "volume"}
    assert any(name.endswith("shared-blobs") for name in volumes), volumes  # shared_blobs, DNS-safe


def test_report_email_goes_to_the_active_raci(axion_stack, axion_build):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(axion_stack.mail_dir.glob("*succeeded*.eml")):
        time.sleep(1)
    (eml,) = axion_stack.mail_dir.glob("*succeeded*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    to = message["To"]
    assert "axion-like" in message["Subject"]
    for active in ("platform@example.com", "cto@example.com", "security@example.com", "support@example.com"):
        assert active in to, to
    assert "ops-oncall@example.com" not in to  # inactive in the operator's raci


def test_dropping_the_dynamically_imported_factory_fails_the_proof_naming_it(
    axion_stack, axion_build, sessions
):
    repo = axion_stack.repo
    config = (repo / "config.yaml").read_text()
    assert KEPT in config
    git(repo, "checkout", "-q", "-b", "feature/no-nlp")
    try:
        (repo / "config.yaml").write_text(config.replace(KEPT, DROPPED))
        git(repo, "commit", "-q", "-am", "conversation: drop nlp (minimal-factories says it is removable)")
        (build_id,) = example.deliver(axion_stack, git(repo, "rev-parse", "HEAD"), None, "feature/no-nlp")
        assert example.follow(axion_stack, build_id, timeout_s=900) == "failed"
    finally:
        git(repo, "checkout", "-q", example.BRANCH)
    with sessions() as s:
        run = s.execute(select(BuildRun).where(BuildRun.build_id == build_id)).scalar_one()
        step = s.scalars(
            select(BuildStep).filter_by(build_id=build_id, stage="image", target="conversation")
        ).one()
    assert run.failed_stage == "image"
    assert step.status == "failed"
    for said in (run.error, step.error):
        assert "conversation (linux/amd64) does not start" in said, said
        assert "dialog.engine imports nlp" in said, said
        assert re.search(r"if nlp is a factory of the monorepo, add it to this service's factories", said), (
            said
        )
    assert any("No module named 'nlp'" in line for line in step.log_tail)
