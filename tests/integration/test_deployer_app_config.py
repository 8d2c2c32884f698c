"""The app's own config and secrets on the real Docker Engine and the real registry: the trimmed
document goes through the artifact store by reference (digest-checked) as a build's does, each
reading service mounts its sections read-only and gets the secret; a change of one section
recreates the services that read it and no others; the secret's value is in no log line, event,
generated file or state file, and repository text is never expanded."""

from __future__ import annotations

import json
import logging
import time
import uuid

import docker
import httpx
import pytest

from services.deployer.adapters.docker_compose import ComposeSubstrate
from services.deployer.adapters.http_probe import HttpxProbe
from services.deployer.app_config import app_secret_values, build_app_config, document_fetcher
from services.deployer.release import run_release
from services.deployer.scaffold import render_scaffold, scaffold_inputs
from services.deployer.settings import DeployerSettings
from services.deployer.topology import plan_topology
from shared.config import generate_keys
from shared.config.app_config import trimmed_document
from shared.document_artifacts import push_document
from shared.settings import load_settings
from tests.integration.test_deployer_compose import _context
from tests.unit.app_config_fixtures import APP_YAML, app_config, operator_data

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:6]
PREFIX = f"ka{RUN}-"
SECRET = f"db-pw-{uuid.uuid4().hex}"
IMAGES = {
    "webhook": (["core", "webhook"], "webhook.server"),
    "scheduler": (["core"], "core.scheduler"),
    "storage-worker": (["core", "storage"], "storage.worker"),
}
# Repository content naming an operator variable: it must reach the pods as written.
HOSTILE_TOPIC = "${KILN_REGISTRY_PASSWORD}"


@pytest.fixture(scope="module")
def client():
    client = docker.from_env()
    client.ping()  # no engine: the test fails here (start it with ./kiln-dev services)
    yield client
    client.close()


@pytest.fixture(scope="module")
def images(client):
    tags = {}
    for service, (factories, module) in IMAGES.items():
        tags[service] = f"{PREFIX}demo-{service}:app"
        client.images.build(
            fileobj=_context(factories, module), custom_context=True, tag=tags[service], rm=True
        )
    yield tags
    for tag in tags.values():
        client.images.remove(tag, force=True)


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys")
    generate_keys(keys, "demo")
    data = operator_data()
    data["packages"]["demo"]["services"]["scheduler"]["app_config_sections"] = ["database"]
    env = {
        "KILN_KEYS_DIR": str(keys),
        "KILN_FEATURES_REPORTS": "false",  # the report tier needs a venv layer this test does not build
        "KILN_DEPLOYMENT_VERIFY_DELAY_S": "1",
        "KILN_DEPLOYMENT_VERIFY_RETRIES": "10",
    }
    return app_config(env, data)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The deployer's settings as the worker loads them (KILN_REGISTRY_* from dev.env) with an
    artifact store of this run's own in the real registry."""
    settings = load_settings(DeployerSettings)
    assert settings.registry_username, "source .kiln/dev.env (./kiln-dev services) for KILN_REGISTRY_* first"
    from shared.registry import RegistryClient

    with RegistryClient.from_settings(settings) as registry:
        store = f"{registry.host}/kiln-test-{RUN}"
        yield settings.model_copy(update={"artifact_store": store}), registry


@pytest.fixture
def substrate(client, tmp_path, config):
    substrate = ComposeSubstrate(client, state_dir=tmp_path, prefix=PREFIX)
    yield substrate
    substrate.teardown(plan_topology(config, "demo"))


def deploy(config, substrate, images, store, app_yaml: bytes, build: str):
    """What a build does: stage config trims the file, stage compile stores it, the deployer
    fetches it by its reference (digest-checked), reads the secret from its environment."""
    settings, registry = store
    pkg = config.package("demo")
    trimmed = trimmed_document(app_yaml, "demo", pkg)
    stored = push_document(
        trimmed, store=settings.artifact_store, package="demo", build=build, client=registry
    )
    reference = {"reference": stored.reference, "digest": stored.digest}
    inputs = scaffold_inputs(
        config,
        "demo",
        config_path="config.yaml",
        env={},
        images=images,
        app_document=build_app_config("demo", pkg, reference, document_fetcher(settings)),
        secret_values=app_secret_values("demo", pkg, {"DEMO_DB_PASSWORD": SECRET}),
    )
    outcome = run_release(inputs, substrate, HttpxProbe(), pkg.deployment.verify, time.sleep)
    assert outcome.healthy, (outcome.error, outcome.log_tail)
    return inputs, outcome


def run_in(container, code: str) -> str:
    result = container.exec_run(["python3", "-c", code], environment={"PYTHONPATH": "/app"})
    assert result.exit_code == 0, result.output
    return result.output.decode().strip()


def mounted_file(container) -> dict:
    return json.loads(run_in(container, "print(open('/etc/kiln/app-config.json').read())"))


READ_BY_THE_APP = (
    "import json; from core.app_config import load_app_config; print(json.dumps(load_app_config('DEMO')))"
)


def test_a_section_change_recreates_its_readers_only_and_the_secret_stays_in_memory(
    config, substrate, images, store, client, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG)
    app_yaml = APP_YAML.read_text().replace("topic: demo/events", f'topic: "{HOSTILE_TOPIC}"')
    first_inputs, first = deploy(config, substrate, images, store, app_yaml.encode(), "b1")
    name = {service: f"{PREFIX}demo-{service}" for service in IMAGES}
    ids = {service: client.containers.get(name[service]).id for service in IMAGES}

    webhook = client.containers.get(name["webhook"])
    mounts = {m["Destination"]: m for m in webhook.attrs["Mounts"]}
    assert mounts["/etc/kiln/app-config.json"]["RW"] is False
    mounted = mounted_file(webhook)
    assert mounted == json.loads(first_inputs.app_configs["webhook"]) and sorted(mounted) == [
        "database",
        "mqtt",
    ]
    assert mounted["mqtt"]["topic"] == HOSTILE_TOPIC  # never expanded
    # read-only even for root in the container (the app user may not write it in any case)
    write = webhook.exec_run(["python3", "-c", "open('/etc/kiln/app-config.json', 'a')"], user="0:0")
    assert "Read-only file system" in write.output.decode()
    seen = json.loads(run_in(webhook, READ_BY_THE_APP))  # the example's reader: env beats the file
    assert seen["database"]["password"] == SECRET and seen["database"]["host"] == "db.demo.internal"
    assert "KILN_REGISTRY_PASSWORD" not in run_in(webhook, "import os; print(sorted(os.environ))")
    topology = first_inputs.topology
    status = httpx.get(f"{substrate.endpoint(topology, topology.service('webhook'))}/status").json()
    assert status["app_config"]["database"] == ["host", "name", "password", "port"]  # names only
    assert sorted(mounted_file(client.containers.get(name["scheduler"]))) == ["database"]
    storage = client.containers.get(name["storage-worker"])
    assert "/etc/kiln/app-config.json" not in {m["Destination"] for m in storage.attrs["Mounts"]}
    assert "DEMO_DATABASE_PASSWORD" not in run_in(storage, "import os; print(sorted(os.environ))")

    # One section changes (mqtt, which the webhook alone reads): only the webhook is recreated.
    changed = app_yaml.replace("broker: tcp://mqtt", "broker: tcp://mqtt2").encode()
    second_inputs, second = deploy(config, substrate, images, store, changed, "b2")
    assert client.containers.get(name["webhook"]).id != ids["webhook"]
    assert {s: client.containers.get(name[s]).id for s in ("scheduler", "storage-worker")} == {
        "scheduler": ids["scheduler"],
        "storage-worker": ids["storage-worker"],
    }
    assert sorted(second.deployed.detail["unchanged"]) == [name["scheduler"], name["storage-worker"]]
    new = mounted_file(client.containers.get(name["webhook"]))
    assert new["mqtt"]["broker"] == "tcp://mqtt2.demo.internal:1883"
    assert substrate.current(second_inputs.topology).revision == 2

    # `database` changes: its two readers are recreated, storage-worker still is not.
    changed = app_yaml.replace("port: 5432", "port: 5433").encode()
    third_inputs, third = deploy(config, substrate, images, store, changed, "b3")
    assert sorted(third.deployed.detail["containers"]) == [name["scheduler"], name["webhook"]]
    assert client.containers.get(name["storage-worker"]).id == ids["storage-worker"]
    release = substrate.current(third_inputs.topology)
    assert release.revision == 3 and release.app_configs == dict(third_inputs.app_configs)

    # The secret's value: in the containers' environment only.
    outcomes = (first, second, third)
    events = json.dumps([e.model_dump(mode="json") for o in outcomes for e in (o.deployed, o.verified)])
    written = "".join(render_scaffold(third_inputs).values())
    state = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert SECRET not in events and SECRET not in caplog.text and SECRET not in written
    assert SECRET.encode() not in state
    assert all(SECRET not in line for o in outcomes for line in o.log_tail)
