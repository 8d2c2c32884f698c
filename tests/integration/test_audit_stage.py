"""The audit stage on real parts: the scanner, the deployer's gate and the reporter run as workers
on a RabbitMQ vhost and MariaDB; the image is built and pushed to the local registry with a
fake-looking GitHub token (made at test time) baked into a file; Trivy is real, and so is the
SMTP server the report is mailed through.

Two packages audit all four modes: `demo` gates on secrets (`fail_on: [secrets]`), `lenient`
gates on nothing. The deployer runs with the scan optional (KILN_DEPLOYER_OPTIONAL_FACTS=scan):
the scan's own secret gate fails any image with a secret whatever the audit says, and these
tests are about what the audit gate decides."""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
import uuid
from pathlib import Path

import aio_pika
import httpx
import pytest
import yaml
from playwright.async_api import async_playwright
from sqlalchemy import select

from services.deployer.bootstrap import bootstrap as deployer_bootstrap
from services.deployer.models import DeployerFact
from services.deployer.settings import DeployerSettings
from services.reporter.bootstrap import bootstrap as reporter_bootstrap
from services.scanner.bootstrap import bootstrap as scanner_bootstrap
from services.scanner.settings import ScannerSettings
from shared.bus import Bus, SqlIdempotencyGuard
from shared.bus import topology as t
from shared.bus.topology import DEPLOYER_GATE
from shared.db.models import Audit, EventLog
from shared.events import BuildRequested, CompileCompleted, ImagePushed, StageFinished
from shared.events.build import Options
from shared.events.compile import TargetPlatform
from tests.integration.test_gateway_server import running_gateway
from tests.integration.test_reporter_notify import SmtpServer, parts
from tests.integration.test_scanner_trivy import dev_env, push_image

pytestmark = [pytest.mark.integration, pytest.mark.browser]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "operator" / "config.yaml"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PLATFORM = "linux/amd64"
MODES = ["deps", "config", "secrets", "image"]


def fake_github_token() -> str:
    """Shaped like a GitHub personal access token (trivy's `github-pat` rule), random, never real."""
    return "ghp_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36))


def operator_config(directory: Path) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    demo = data["packages"]["demo"]
    demo["audit"] = {"modes": MODES, "fail_on": ["secrets"]}
    data["packages"]["lenient"] = {**demo, "audit": {"modes": MODES}}
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def token() -> str:
    return fake_github_token()


@pytest.fixture(scope="module")
def pushed(token) -> tuple[str, str]:
    return push_image("audit-token", {"/app/settings.py": f'GITHUB_TOKEN = "{token}"\n'.encode()})


@pytest.fixture(scope="module")
def smtp(tmp_path_factory):
    server = SmtpServer(tmp_path_factory.mktemp("smtp"))
    server.controller.start()
    yield server
    server.controller.stop()


@pytest.fixture(scope="module")
async def stack(amqp_url, database_url, sessions, smtp, tmp_path_factory):
    """Scanner, deployer gate and reporter (history + notify) consuming on the module's vhost."""
    work = tmp_path_factory.mktemp("audit-stage")
    config = operator_config(work)
    env = dev_env()
    scanner = scanner_bootstrap(
        ScannerSettings(
            amqp_url=amqp_url,
            database_url=database_url,
            config_path=str(config),
            trivy=env["KILN_TRIVY"],
            trivy_cache_dir=str(work / "trivy-cache"),
            trivy_db_download=False,
            registry_username=env["KILN_REGISTRY_USERNAME"],
            registry_password=env["KILN_REGISTRY_PASSWORD"],
            instance=f"test-{uuid.uuid4().hex[:6]}",
        )
    )
    reporter = reporter_bootstrap(
        smtp.settings(
            amqp_url=amqp_url,
            database_url=database_url,
            config_path=str(config),
            history_writer="thread",
            history_batch_wait_ms=50,
            watchdog_interval_s=0,
        ),
        sessions=sessions,
    )
    deployer_settings = DeployerSettings(
        config_path=str(config), amqp_url=amqp_url, database_url=database_url, deployer_optional_facts="scan"
    )
    gate = deployer_bootstrap(deployer_settings, sessions, substrate_for=_no_substrate, env={})
    buses = []
    for app in (scanner, reporter):
        bus = await app.bus().connect()
        await app.start(bus)
        buses.append(bus)
    gate_bus = await Bus(amqp_url, source="deployer").connect()
    await gate_bus.consume(DEPLOYER_GATE, gate.handlers(DEPLOYER_GATE), guard=SqlIdempotencyGuard(sessions))
    buses.append(gate_bus)
    yield config
    for bus in buses:
        await bus.stop(grace_s=20)


@pytest.fixture
async def observer(amqp_url):
    """Every event of every build on the vhost, as an outside tool would see it."""
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(t.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue("", exclusive=True)
    await queue.bind(exchange, "#")
    yield queue
    await connection.close()


def _no_substrate(name: str):
    raise AssertionError(f"these builds skip the deploy (asked for {name})")


async def run_build(amqp_url: str, package: str, repository: str, digest: str) -> str:
    """What the gateway, compiler, imager and attester would publish for one amd64 image."""
    build_id = str(uuid.uuid4())
    where = {"target": "webhook", "platform": PLATFORM}
    steps = [
        (
            "gateway",
            BuildRequested(package=package, options=Options(skip_deploy=True, notify="dev@example.com")),
        ),
        ("compiler", CompileCompleted(ok=True, targets=(TargetPlatform(**where),))),
        ("imager", StageFinished(stage="push", status="succeeded", **where)),
        ("attester", StageFinished(stage="attest", status="succeeded", **where)),
        ("imager", ImagePushed(**where, repository=repository, tag="b1", digest=digest, size_bytes=1)),
    ]
    for source, event in steps:
        bus = await Bus(amqp_url, source=source).connect()
        try:
            await bus.emit(event, build_id=build_id, package=package)
        finally:
            await bus.stop(grace_s=5)
    return build_id


async def events_until_finished(queue, build_id: str, timeout: float = 90) -> list[bytes]:
    got: list[bytes] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        message = await queue.get(no_ack=True, fail=False)
        if message is None:
            await asyncio.sleep(0.1)
            continue
        if build_id.encode() in message.body:
            got.append(message.body)
            if b'"dev.kiln.build.finished.v1"' in message.body:
                return got
    raise AssertionError(f"build {build_id} did not finish within {timeout}s ({len(got)} events)")


async def rows_of(sessions, model, build_id: str, count: int, timeout: float = 20) -> list:
    """The reporter writes in batches: wait for its rows."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        with sessions() as session:
            rows = list(session.scalars(select(model).where(model.build_id == build_id)))
        if len(rows) >= count or asyncio.get_running_loop().time() > deadline:
            return rows
        await asyncio.sleep(0.2)


async def mail_for(smtp, build_id: str, timeout: float = 20):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        for message in smtp.inbox.messages:
            if message["X-Kiln-Build"] == build_id:
                return parts(message)
        await asyncio.sleep(0.2)
    raise AssertionError(f"no report mailed for {build_id}")


async def audit_rows_in_chromium(html: str, name: str) -> int:
    """The mailed HTML as a person sees it (headless Chromium, as tests/browser/test_report_email.py
    does): how many audit rows are visible; the PNG goes to test-artifacts/ for review."""
    assert Path(CHROMIUM).exists(), "install Chromium: apt-get install -y chromium"
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 900, "height": 800})
            await page.set_content(html, wait_until="load")
            block = page.locator("#audit")
            assert await block.is_visible()
            await block.screenshot(path=str(ARTIFACTS / f"{name}.png"))
            return await block.locator("tr:has(.pill)").count()
        finally:
            await browser.close()


async def test_a_secret_fails_the_gate_when_secrets_gate(
    stack, pushed, token, observer, amqp_url, database_url, sessions, smtp, caplog
):
    caplog.set_level(logging.INFO)
    repository, digest = pushed
    build_id = await run_build(amqp_url, "demo", repository, digest)
    bodies = await events_until_finished(observer, build_id)
    finished = next(b for b in bodies if b'"dev.kiln.build.finished.v1"' in b)
    assert b'"status":"failed"' in finished and b'"failed_stage":"audit"' in finished
    assert b"github-pat" in finished  # the reason names the rule and the place ...
    assert b"/app/settings.py:1" in finished

    audits = await rows_of(sessions, Audit, build_id, len(MODES))
    by_mode = {row.mode: row for row in audits}
    assert set(by_mode) == set(MODES)
    assert {(row.image, row.platform, row.digest) for row in audits} == {("webhook", PLATFORM, digest)}
    secret = by_mode["secrets"]
    assert secret.verdict == "fail" and secret.counts["CRITICAL"] == 1
    (finding,) = secret.findings
    assert (finding["id"], finding["file"], finding["line"]) == ("github-pat", "/app/settings.py", 1)
    assert {row.verdict for mode, row in by_mode.items() if mode != "secrets"} == {"report"}
    assert by_mode["image"].counts["packages"] > 50  # the base image's Debian packages, listed offline
    assert "no vulnerability database" in by_mode["deps"].note

    mail = await mail_for(smtp, build_id)
    html, text = mail["text/html"], mail["text/plain"]
    assert 'id="audit"' in html and "github-pat at /app/settings.py:1" in html
    assert "AUDIT (fail)" in text
    assert await audit_rows_in_chromium(html, "report-email-audit") == len(MODES)
    async with running_gateway(amqp_url, database_url) as (url, _app), httpx.AsyncClient() as client:
        page = (await client.get(f"{url}/ui/builds/{build_id}")).text
        api = (await client.get(f"{url}/builds/{build_id}")).text
    assert '<section id="audit">' in page and "github-pat at /app/settings.py:1" in page

    # ... never its value: not in an event, the history, the email, the dashboard or a log line
    with sessions() as session:
        stored = [row.body for row in session.scalars(select(EventLog).where(EventLog.build_id == build_id))]
    seen = [*(b.decode() for b in bodies), *map(str, stored), html, text, page, api, caplog.text]
    seen += [str(row.findings) + str(row.note) for row in audits]
    assert not [where for where in seen if token in where]
    assert not [where for where in seen if token[4:20] in where]


async def test_a_secret_is_reported_but_passes_when_secrets_do_not_gate(
    stack, pushed, token, observer, amqp_url, sessions, smtp
):
    repository, digest = pushed
    build_id = await run_build(amqp_url, "lenient", repository, digest)
    bodies = await events_until_finished(observer, build_id)
    finished = next(b for b in bodies if b'"dev.kiln.build.finished.v1"' in b)
    assert b'"status":"succeeded"' in finished
    audits = await rows_of(sessions, Audit, build_id, len(MODES))
    by_mode = {row.mode: row for row in audits}
    assert {row.verdict for row in audits} == {"report"}
    assert by_mode["secrets"].findings[0]["id"] == "github-pat"
    with sessions() as session:
        facts = session.scalars(select(DeployerFact).where(DeployerFact.build_id == build_id)).all()
    assert ("audit", True) in {(f.fact, f.ok) for f in facts}
    html = (await mail_for(smtp, build_id))["text/html"]
    assert "github-pat at /app/settings.py:1" in html and token not in html
