"""`python -m services.scanner audit … --build-id B`: the results printed and published as
`audit.completed` between stage events (what the reporter stores in `log_audit`)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import aio_pika
import pytest

from services.scanner.__main__ import build_parser, run_audit
from services.scanner.settings import ScannerSettings
from shared.bus import topology as t
from tests.integration.test_scanner_service import collect
from tests.integration.test_scanner_trivy import dev_env, planted_key_pem

pytestmark = pytest.mark.integration


@pytest.fixture
async def audit_observer(amqp_url):
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(t.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue("", exclusive=True)
    for key in ("audit.completed", "stage.#"):
        await queue.bind(exchange, key)
    yield queue
    await connection.close()


async def test_audit_within_a_build_emits_audit_completed(audit_observer, amqp_url, tmp_path, capsys):
    tree = tmp_path / "src"
    (tree / "requirements").mkdir(parents=True)
    (tree / "requirements" / "web.txt").write_text("flask==3.0.0\nrequests\n")
    (tree / "Dockerfile").write_text("FROM kiln-base:bookworm-amd64\nUSER root\n")
    (tree / "deploy_key.pem").write_bytes(planted_key_pem())
    settings = ScannerSettings(
        amqp_url=amqp_url,
        trivy=dev_env()["KILN_TRIVY"],
        trivy_cache_dir=str(tmp_path / "cache"),
        trivy_db_download=False,
    )
    build_id = str(uuid.uuid4())
    args = build_parser().parse_args(
        ["audit", "all", "--path", str(tree), "--build-id", build_id, "--package", "demo"]
    )
    exit_code = await asyncio.to_thread(run_audit, args, settings)
    assert exit_code == 1  # a secret in the tree
    printed = capsys.readouterr().out
    assert "== audit secrets" in printed and "deploy_key.pem" in printed
    events = await collect(audit_observer, build_id, "dev.kiln.stage.finished.v1", timeout=30)
    audits = {e["data"]["mode"]: e["data"] for e in events if e["type"] == "dev.kiln.audit.completed.v1"}
    assert set(audits) == {"deps", "config", "secrets"}
    assert audits["deps"]["counts"]["unpinned"] == 1
    assert {f["id"] for f in audits["config"]["findings"]} >= {"DS-0002", "DS-0026"}
    assert audits["secrets"]["findings"][0]["file"] == "deploy_key.pem"
    assert "BEGIN" not in json.dumps(events)
    assert events[0]["data"]["stage"] == "audit"


def test_audit_image_without_a_reference_is_a_usage_error():
    result = subprocess.run(
        [sys.executable, "-m", "services.scanner", "audit", "image"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "--image-tag" in result.stderr
