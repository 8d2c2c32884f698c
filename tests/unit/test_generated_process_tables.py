"""The process tables (docker-compose.yml, the chart's process lists, the dev stack's table) are
generated from the specs: the checked-in files are what `python -m scripts.generate` writes now,
and a new service (or stage) shows up in all three with no hand edit."""

from __future__ import annotations

import shutil
from pathlib import Path

import helm_python as helm
import pytest
import yaml

from scripts.generate import COMMAND, ROOT, TARGETS, render_all
from scripts.stack.layout import Stack
from shared.bus.topology import SERVICES
from shared.processes import DeploymentProfile, service_processes
from shared.stages import ARCH, STAGES, StageSpec
from tests.unit.test_kiln_chart import SECRETS

# A service like the notary will be: consumes image.pushed, once per image, gates the deploy.
ATTEST = StageSpec("attest", "notary", "Attest", "image.pushed", "images", per_image=True, gate=True)
# And one that works per architecture, as the imager does (its queue is one per architecture).
SIGN = StageSpec("sign", "signer", "Sign", "image.pushed", ARCH, per_image=True)
NAMES = (*(spec.name for spec in SERVICES), "notary", "signer")


def hypothetical(**profiles: DeploymentProfile):
    from shared.processes import PROFILES

    return service_processes(NAMES, (*STAGES, ATTEST, SIGN), {**PROFILES, **profiles})


@pytest.mark.parametrize("path", sorted(TARGETS))
def test_checked_in_file_is_what_the_generator_writes(path):
    generated = render_all()[path]
    assert (ROOT / path).read_text(encoding="utf-8") == generated, (
        f"{path} is stale: the specs (shared/processes.py, shared/stages.py, shared/bus/topology.py) "
        f"changed since it was generated. Run `{COMMAND}` and commit the result."
    )


def test_the_generator_is_deterministic():
    assert render_all() == render_all()


def test_a_new_service_gets_a_compose_service():
    compose = yaml.safe_load(render_all(processes=hypothetical())["docker-compose.yml"])
    services = compose["services"]
    notary = services["notary"]
    assert notary["command"] == ["python", "-m", "services.notary"]
    assert "KILN_AMQP_PASSWORD_ATTESTER" in services["broker-users"]["environment"]
    assert notary["environment"]["KILN_AMQP_URL"].startswith("amqp://kiln-notary:")
    assert notary["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert {"signer-amd64", "signer-arm64"} <= set(services)
    assert "signer" not in services
    offline = render_all(processes=hypothetical())["docker-compose.offline.yml"]
    assert "  notary: *kiln-offline\n" in offline
    assert "\nKILN_AMQP_PASSWORD_ATTESTER=\n" in render_all(processes=hypothetical())[".env.example"]


def test_a_new_service_gets_a_chart_deployment(tmp_path):
    chart = tmp_path / "kiln"
    shutil.copytree(ROOT / "charts" / "kiln", chart)
    for path, text in render_all(processes=hypothetical()).items():
        if path.startswith("charts/kiln/"):
            (chart / path.removeprefix("charts/kiln/")).write_text(text, encoding="utf-8")
    values = {"secrets": {"values": {**SECRETS["secrets"]["values"]}}}
    for name in ("notary", "signer"):
        values["secrets"]["values"][f"KILN_AMQP_URL_{name.upper()}"] = f"amqp://kiln-{name}:x@rabbitmq/"
    rendered = helm.Chart.load(str(chart)).render(
        values, name="kiln", namespace="kiln-system", is_install=True
    )
    docs = [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]
    objects = {(doc["kind"], doc["metadata"]["name"]) for doc in docs}
    assert {("Deployment", "kiln-notary"), ("ServiceAccount", "kiln-notary")} <= objects
    assert {("Deployment", "kiln-signer-amd64"), ("ScaledObject", "kiln-signer-arm64")} <= objects
    notary = next(d for d in docs if d["metadata"]["name"] == "kiln-notary" and d["kind"] == "Deployment")
    container = notary["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["python", "-m", "services.notary"]
    assert {e["name"] for e in container["env"]} == {"KILN_AMQP_URL", "KILN_DATABASE_URL"}
    signer = next(
        d for d in docs if d["metadata"]["name"] == "kiln-signer-arm64" and d["kind"] == "ScaledObject"
    )
    assert signer["spec"]["triggers"][0]["metadata"]["queueName"] == "kiln.signer.arm64"


def test_a_new_service_gets_a_stack_process(tmp_path):
    stack = Stack(
        state=tmp_path,
        vhost="v",
        database="d",
        gateway_port=8000,
        smtp_port=1025,
        prefix="p-",
        kiln_processes=hypothetical(),
    )
    stack.service_amqp_url = lambda name: f"amqp://{name}"  # no broker users in a unit test
    table = {process.name: process for process in stack.process_table()}
    assert table["notary"].args == ["-m", "services.notary"]
    assert "KILN_HEALTH_PORT" in table["notary"].env
    assert table["signer-arm64"].args == ["-m", "services.signer"]
    assert "notary" in stack.workers


def test_a_profile_is_one_line_for_a_service_with_a_command():
    processes = hypothetical(notary=DeploymentProfile(args=("worker",), sandbox=True))
    compose = yaml.safe_load(render_all(processes=processes)["docker-compose.yml"])
    assert compose["services"]["notary"]["command"][-1] == "worker"
    assert compose["services"]["notary"]["security_opt"] == ["seccomp=unconfined", "no-new-privileges:true"]


def test_the_dev_stack_runs_what_compose_runs(tmp_path):
    stack = Stack(state=tmp_path, vhost="v", database="d", gateway_port=8000, smtp_port=1025, prefix="p-")
    stack.service_amqp_url = lambda name: f"amqp://{name}"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for process in stack.process_table():
        if process.name == "mailcatcher":
            continue
        assert compose[process.name]["command"][1:3] == process.args[:2], process.name
    assert {p.name for p in stack.process_table()} - {"mailcatcher"} == {
        name for process in service_processes() for name in process.names
    }


def test_per_arch_workers_come_from_the_stages():
    by_service = {p.service: p for p in service_processes()}
    assert by_service["imager"].per_arch
    assert not by_service["scanner"].per_arch  # per image, but on one queue (kiln.scanner.images)
    assert Path(ROOT / "charts" / "kiln" / "templates" / "_processes.tpl").is_file()


def test_an_architecture_is_switched_off_or_scaled_by_values_alone():
    values = {
        **SECRETS,
        "imager": {"architectures": {"arm64": {"enabled": False}, "amd64": {"maxReplicas": 3}}},
    }
    rendered = helm.Chart.load(str(ROOT / "charts" / "kiln")).render(
        values, name="kiln", namespace="kiln-system", is_install=True
    )
    docs = {
        (doc["kind"], doc["metadata"]["name"]): doc
        for text in rendered.values()
        for doc in yaml.safe_load_all(text)
        if doc
    }
    assert ("Deployment", "kiln-imager-arm64") not in docs
    assert ("ScaledObject", "kiln-imager-arm64") not in docs
    amd64 = docs[("ScaledObject", "kiln-imager-amd64")]["spec"]
    assert (amd64["minReplicaCount"], amd64["maxReplicaCount"]) == (1, 3)  # values' 1, the override's 3
