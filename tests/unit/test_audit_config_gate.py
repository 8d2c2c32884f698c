"""`packages.<p>.audit` in the operator config: what it accepts, and how the deploy gate follows it
(the `audit` fact is waited for only for packages that run audits)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import StaticPool

from services.deployer.bootstrap import handler_table
from services.deployer.models import DeployerBuild, DeployerFact, DeployerImage
from services.deployer.settings import DeployerSettings
from shared.config import ConfigError, load_config
from shared.db.models import Base
from shared.events import BuildFinished, BuildRequested, CompileCompleted, ImagePushed, StageFinished
from shared.events.build import Options
from shared.events.compile import TargetPlatform
from shared.stages import GATE_FACTS, OPTIONAL_GATE_FACTS
from tests.unit.test_deployer_gate import Envelope, FakeContext

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "operator" / "config.yaml"
WHERE = {"target": "webhook", "platform": "linux/amd64"}


def config_with(tmp_path: Path, **audits: dict) -> Path:
    """The example operator config with packages copied from `demo`, each with its `audit`."""
    data = yaml.safe_load(EXAMPLE.read_text())
    demo = data["packages"]["demo"]
    for name, audit in audits.items():
        data["packages"][name] = {**demo, "audit": audit}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def errors(tmp_path: Path, audit: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as failure:
        load_config(config_with(tmp_path, demo=audit), {})
    return dict(failure.value.errors)


def test_the_audit_section_is_read_per_package(tmp_path):
    path = config_with(tmp_path, demo={"modes": ["secrets", "config"], "fail_on": ["secrets"]}, plain={})
    config = load_config(path, {})
    audit = config.package("demo").audit
    assert (audit.modes, audit.fail_on, audit.fail_at) == (["secrets", "config"], ["secrets"], {})
    assert config.package("demo").gated_stages() == {"audit"}
    assert config.package("plain").gated_stages() == frozenset()


@pytest.mark.parametrize(
    ("audit", "key", "says"),
    [
        ({"modes": ["deps"], "fail_on": ["secrets"]}, "packages.demo.audit", "fail_on names secrets"),
        ({"modes": ["deps", "deps"]}, "packages.demo.audit", "must not repeat"),
        ({"modes": ["licences"]}, "packages.demo.audit.modes[0]", "deps"),
        (
            {"modes": ["config"], "fail_on": ["config"], "fail_at": {"deps": "HIGH"}},
            "packages.demo.audit",
            "fail_at",
        ),
        (
            {"modes": ["config"], "fail_on": ["config"], "fail_at": {"config": "SEVERE"}},
            "packages.demo.audit",
            "",
        ),
        ({"mode": ["deps"]}, "packages.demo.audit.mode", ""),
    ],
)
def test_a_bad_audit_section_is_an_error_naming_the_key(tmp_path, audit, key, says):
    found = errors(tmp_path, audit)
    assert any(path.startswith(key) and says in message for path, message in found.items()), found


@pytest.fixture
def sessions():
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    Base.metadata.create_all(
        engine, tables=[DeployerBuild.__table__, DeployerImage.__table__, DeployerFact.__table__]
    )
    return sessionmaker(engine, expire_on_commit=False)


def gate_of(tmp_path, sessions, **settings):
    path = config_with(tmp_path, demo={"modes": ["secrets"], "fail_on": ["secrets"]}, plain={})
    table = handler_table(DeployerSettings(config_path=str(path), **settings), sessions, env={})
    build_id = str(uuid.uuid4())
    emitted: list = []

    def send(event, package):
        ctx = FakeContext(build_id, Envelope(str(uuid.uuid4()), 1, event.routing_key()), package=package)
        table[type(event)](event, ctx)
        emitted.extend(e for e in ctx.emitted if isinstance(e, BuildFinished))

    return send, emitted


def image_proven(send, package):
    """Everything but the audit: compiled, pushed, scanned, attested."""
    send(BuildRequested(package=package, options=Options(skip_deploy=True)), package)
    send(CompileCompleted(ok=True, targets=(TargetPlatform(**WHERE),)), package)
    send(ImagePushed(**WHERE, repository="r/w", tag="b1", digest="sha256:" + "a" * 64, size_bytes=1), package)
    for stage in GATE_FACTS:
        send(StageFinished(stage=stage, status="succeeded", **WHERE), package)


def test_the_gate_waits_for_the_audit_of_a_package_that_runs_audits(tmp_path, sessions):
    send, finished = gate_of(tmp_path, sessions)
    image_proven(send, "demo")
    assert finished == []  # waiting for the audit
    send(
        StageFinished(
            stage="audit", status="failed", error="secrets: 1 finding(s) (github-pat at /a:1)", **WHERE
        ),
        "demo",
    )
    (end,) = finished
    assert (end.status, end.failed_stage) == ("failed", "audit")
    assert end.error == "audit of webhook (linux/amd64) failed: secrets: 1 finding(s) (github-pat at /a:1)"


def test_a_package_without_audits_deploys_without_waiting(tmp_path, sessions):
    send, finished = gate_of(tmp_path, sessions)
    image_proven(send, "plain")
    assert [e.status for e in finished] == ["succeeded"]


def test_the_operator_can_make_the_audit_optional_for_a_deployment_without_it(tmp_path, sessions):
    send, finished = gate_of(tmp_path, sessions, deployer_optional_facts="audit")
    image_proven(send, "demo")
    assert [e.status for e in finished] == ["succeeded"]


def test_audit_is_a_gate_fact_only_by_the_package():
    assert "audit" not in GATE_FACTS and OPTIONAL_GATE_FACTS == ("audit",)
    assert DeployerSettings().required_facts() == GATE_FACTS
    with pytest.raises(ValueError, match="gate stages: push, scan, attest, audit"):
        DeployerSettings(deployer_optional_facts="audti")
