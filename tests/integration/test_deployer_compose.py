"""The compose substrate for real on the local Docker Engine: the example package's services
built into images here (FROM the local base image, the example factories copied as source),
deployed and verified; then a broken image fails verify and the previous containers come back
(the services whose image did not change keep their containers throughout); then a release that
changes only the config (the mounted file) breaks a service and is rolled back to the previous
config, with which the containers restart."""

from __future__ import annotations

import io
import os
import tarfile
import time
import uuid
from pathlib import Path

import docker
import pytest

from services.deployer.adapters.docker_compose import ComposeSubstrate
from services.deployer.adapters.http_probe import HttpxProbe
from services.deployer.release import run_release
from services.deployer.scaffold import scaffold_inputs
from shared.config import generate_keys, load_config

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "monorepo"
OPERATOR_CONFIG = EXAMPLE.parent / "operator" / "config.yaml"
BASE_IMAGE = os.environ.get("KILN_BASE_IMAGE_AMD64", "kiln-base:bookworm-amd64")
RUN = uuid.uuid4().hex[:6]
PREFIX = f"kt{RUN}-"


def _context(factories: list[str], module: str, extra: dict[str, str] | None = None) -> io.BytesIO:
    """A build context: Dockerfile + the chosen factories as source under /app (and `extra`
    files), CMD running `module` (as the imager's images do: the image, not the deployer, knows
    its command)."""
    dockerfile = f"FROM {BASE_IMAGE}\nWORKDIR /app\nENV PYTHONPATH=/app PYTHONUNBUFFERED=1\n" + "".join(
        f"COPY {f} /app/{f}\n" for f in [*factories, *(extra or {})]
    )
    # the imager's USER (services/imager/templates/Dockerfile.j2): the substrate confines apps to it
    dockerfile += f'USER 65532:65532\nCMD ["python3", "-m", "{module}"]\n'
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in {"Dockerfile": dockerfile, **(extra or {})}.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for factory in factories:
            tar.add(
                EXAMPLE / factory, arcname=factory, filter=lambda t: None if "__pycache__" in t.name else t
            )
    buffer.seek(0)
    return buffer


@pytest.fixture(scope="module")
def client():
    client = docker.from_env()
    client.ping()  # no engine: the test fails here (start it with ./kiln-dev services)
    yield client
    client.close()


@pytest.fixture(scope="module")
def images(client):
    good = {
        "webhook": (["core", "webhook"], "webhook.server"),
        "scheduler": (["core"], "core.scheduler"),
        "storage-worker": (["core", "storage"], "storage.worker"),
    }
    tags = {}
    for service, (factories, module) in good.items():
        tags[service] = f"{PREFIX}demo-{service}:good"
        client.images.build(
            fileobj=_context(factories, module), custom_context=True, tag=tags[service], rm=True
        )
    # No webhook factory: `python3 -m webhook.server` exits at once with ModuleNotFoundError.
    broken = f"{PREFIX}demo-webhook:broken"
    client.images.build(
        fileobj=_context(["core"], "webhook.server"), custom_context=True, tag=broken, rm=True
    )
    yield tags, broken
    for tag in (*tags.values(), broken):
        client.images.remove(tag, force=True)


# A webhook that refuses a config whose feature `refuse_me` is on: what a service does when a
# config change is wrong for it (an unknown mode, a missing key) - it exits at start.
CONFIG_GATE = """import json, os, runpy, sys
config = json.load(open(os.environ["KILN_CONFIG"]))
if config.get("features", {}).get("refuse_me"):
    sys.exit("config gate: features.refuse_me is on, refusing to start")
runpy.run_module("webhook.server", run_name="__main__")
"""


@pytest.fixture(scope="module")
def config_env(tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys")
    generate_keys(keys, "demo")
    return {
        "KILN_KEYS_DIR": str(keys),
        "KILN_FEATURES_REPORTS": "false",  # the report tier needs a venv layer this test does not build
        "KILN_DEPLOYMENT_VERIFY_DELAY_S": "1",
        "KILN_DEPLOYMENT_VERIFY_RETRIES": "10",
    }


@pytest.fixture(scope="module")
def config(config_env):
    return load_config(OPERATOR_CONFIG, config_env)


@pytest.fixture(scope="module")
def gated_webhook(client):
    tag = f"{PREFIX}demo-webhook:gated"
    context = _context(["core", "webhook"], "config_gate", extra={"config_gate.py": CONFIG_GATE})
    client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True)
    yield tag
    client.images.remove(tag, force=True)


@pytest.fixture
def substrate(client, tmp_path, config):
    substrate = ComposeSubstrate(client, state_dir=tmp_path, prefix=PREFIX)
    yield substrate
    substrate.teardown(scaffold_inputs(config, "demo", config_path="config.yaml", env={}).topology)


def _release(config, substrate, images: dict[str, str]):
    inputs = scaffold_inputs(config, "demo", config_path="config.yaml", env={}, images=images)
    verify = config.package("demo").deployment.verify
    return inputs, run_release(inputs, substrate, HttpxProbe(), verify, time.sleep)


def test_deploy_verify_then_broken_release_rolls_back(config, substrate, images, client):
    good, broken = images
    services = sorted(config.package("demo").enabled_services())
    assert services == ["scheduler", "storage-worker", "webhook"]

    inputs, first = _release(config, substrate, good)
    assert first.healthy, first.error
    assert first.deployed.revision == 1
    webhook = next(c for c in first.verified.checks if c.service == "webhook")
    assert webhook.pass_rate == 100.0 and webhook.failing_assertions == ()
    container = client.containers.get(f"{PREFIX}demo-webhook")
    mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
    assert mounts["/etc/kiln/config.json"]["RW"] is False and mounts["/etc/kiln/keys"]["RW"] is False
    assert container.attrs["NetworkSettings"]["Networks"].keys() == {f"{PREFIX}demo"}
    first_id = client.containers.get(f"{PREFIX}demo-scheduler").id

    _, second = _release(config, substrate, {**good, "webhook": broken})
    assert not second.healthy
    assert second.deployed.revision == 2
    assert second.verified.rolled_back and second.verified.rollback_revision == 1
    assert second.rollback is not None and second.rollback.rolled_back
    assert "rolled back to revision 1, which is healthy" in second.error
    assert any("ModuleNotFoundError" in line for line in second.log_tail), second.log_tail

    restored = substrate.current(inputs.topology)
    assert restored.revision == 1 and restored.images["webhook"] == good["webhook"]
    up, state = substrate.running(inputs.topology, inputs.topology.service("webhook"))
    assert up, state
    # Its image and config were the same in every release: never recreated (a changed service is).
    assert client.containers.get(f"{PREFIX}demo-scheduler").id == first_id
    assert second.deployed.detail["unchanged"] == [f"{PREFIX}demo-scheduler", f"{PREFIX}demo-storage-worker"]


def test_config_only_change_that_breaks_a_service_is_rolled_back_to_the_previous_config(
    config_env, config, substrate, images, gated_webhook, client
):
    good, _ = images
    same_images = {**good, "webhook": gated_webhook}
    inputs, first = _release(config, substrate, same_images)
    assert first.healthy, first.error

    # Only the config changes: a feature flag in the mounted file; images and topology are the same.
    changed = load_config(OPERATOR_CONFIG, {**config_env, "KILN_FEATURES_REFUSE_ME": "true"})
    changed_inputs, second = _release(changed, substrate, same_images)
    assert changed_inputs.config_json != inputs.config_json
    assert changed_inputs.topology == inputs.topology and changed_inputs.images == inputs.images
    assert not second.healthy
    assert any("refusing to start" in line for line in second.log_tail), second.log_tail
    assert second.rollback is not None and second.rollback.detail["config_restored"] is True
    assert second.error.endswith("rolled back to revision 1, which is healthy (its config restored too)")

    # The containers run again with the previous file mounted, not the refused one.
    container = client.containers.get(f"{PREFIX}demo-webhook")
    mounted = next(
        m["Source"] for m in container.attrs["Mounts"] if m["Destination"] == "/etc/kiln/config.json"
    )
    assert Path(mounted).read_text(encoding="utf-8") == inputs.config_json
    assert container.attrs["RestartCount"] == 0 and container.attrs["State"]["Running"]
    restored = substrate.current(inputs.topology)
    assert restored.revision == 1 and restored.config_json == inputs.config_json
    up, state = substrate.running(inputs.topology, inputs.topology.service("webhook"))
    assert up, state
