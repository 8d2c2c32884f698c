"""Findings 12 and 5 (workloads), on the real Docker Engine: images built from the imager's own
Dockerfile template run as a non-root user, and a compose-substrate deploy confines every
container (no capabilities, no-new-privileges, read-only root, limits) and gives a package only
its own key files: from inside a container, another package's private key cannot be read."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import docker
import pytest

from services.deployer.adapters.docker_compose import ComposeSubstrate
from services.deployer.adapters.http_probe import HttpxProbe
from services.deployer.release import run_release
from services.deployer.scaffold import scaffold_inputs
from services.imager.adapters.docker_engine import DockerEngineBuilder
from services.imager.build_context import service_context
from services.imager.dockerfile import LAUNCHER_SOURCE, ImageSpec, render_dockerfile
from shared.bus import PermanentError
from shared.config import generate_keys, load_config

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "monorepo"
OPERATOR_CONFIG = EXAMPLE.parent / "operator" / "config.yaml"  # the whole package, as the operator writes it
BASE_IMAGE = os.environ.get("KILN_BASE_IMAGE_AMD64", "kiln-base:bookworm-amd64")
RUN = uuid.uuid4().hex[:6]
PREFIX = f"ksec{RUN}-"
APP_USER = "65532:65532"


@pytest.fixture(scope="module")
def client():
    client = docker.from_env()
    client.ping()  # no engine: the test fails here (start it with ./kiln-dev services)
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        auth = {
            "username": os.environ["KILN_REGISTRY_USERNAME"],
            "password": os.environ["KILN_REGISTRY_PASSWORD"],
        }
        client.images.pull(BASE_IMAGE, auth_config=auth)
    yield client
    client.close()


@pytest.fixture(scope="module")
def config_env(tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys")
    generate_keys(keys, "demo")
    generate_keys(keys, "billing")  # another package whose keys share the operator's directory
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
def images(client, config):
    """Each enabled service of the example built with the imager's real Dockerfile template (the
    factories as source: the layout and USER are what matter here)."""
    builder = DockerEngineBuilder(client)
    tags = {}
    for name, svc in sorted(config.package("demo").enabled_services().items()):
        spec = ImageSpec(
            base_image=BASE_IMAGE,
            command=tuple(svc.command),
            factories=tuple(svc.factories),
            port=svc.port,
            health_path=svc.health,
        )
        context = service_context(render_dockerfile(spec), EXAMPLE, spec.factories, None, LAUNCHER_SOURCE)
        tags[name] = f"{PREFIX}demo-{name}:sec"
        builder.build(context, tags[name], platform="linux/amd64")
    yield tags
    for tag in tags.values():
        client.images.remove(tag, force=True)


def test_generated_image_runs_as_a_non_root_user_that_cannot_write_the_image(client, images):
    image = client.images.get(images["webhook"])
    assert image.attrs["Config"]["User"] == APP_USER
    probe = (
        "import os\n"
        "print(os.getuid(), os.getgid())\n"
        "for path in ('/app/webhook/probe', '/opt/kiln/launch/probe'):\n"
        "    try:\n"
        "        open(path, 'w')\n"
        "    except PermissionError:\n"
        "        print('refused', path)\n"
    )
    out = client.containers.run(
        images["webhook"], ["python3", "-c", probe], remove=True, network_mode="none"
    ).decode()
    assert out.splitlines() == ["65532 65532", "refused /app/webhook/probe", "refused /opt/kiln/launch/probe"]


@pytest.fixture
def deployed(client, tmp_path, config, images):
    substrate = ComposeSubstrate(client, state_dir=tmp_path, prefix=PREFIX)
    inputs = scaffold_inputs(config, "demo", config_path="config.yaml", env={}, images=images)
    result = run_release(
        inputs, substrate, HttpxProbe(), config.package("demo").deployment.verify, time.sleep
    )
    yield inputs, result
    substrate.teardown(inputs.topology)
    for volume in client.volumes.list(filters={"name": f"{PREFIX}demo-"}):
        volume.remove(force=True)


def _run_inside(container, code: str) -> tuple[int, str]:
    exit_code, output = container.exec_run(["python3", "-c", code])
    return exit_code, output.decode()


def test_compose_containers_are_confined_and_see_only_their_package_keys(client, deployed, config_env):
    inputs, result = deployed
    assert result.healthy, result.error  # hardened, the services still start and pass verify
    for svc in inputs.topology.apps:
        container = client.containers.get(f"{PREFIX}demo-{svc.dns_name}")
        host = container.attrs["HostConfig"]
        assert container.attrs["Config"]["User"] == APP_USER
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"], svc.name
        assert "no-new-privileges:true" in host["SecurityOpt"]
        assert host["ReadonlyRootfs"] is True
        assert (
            host["NanoCpus"] == 1_000_000_000 and host["Memory"] == 512 * 2**20 and host["PidsLimit"] == 512
        )
        assert host["Tmpfs"] == {"/tmp": "rw,nosuid,nodev,noexec,size=64m"}
        keys_mount = next(m for m in container.attrs["Mounts"] if m["Destination"] == "/etc/kiln/keys")
        assert keys_mount["RW"] is False
        assert Path(keys_mount["Source"]) != Path(config_env["KILN_KEYS_DIR"])  # never the whole directory

    webhook = client.containers.get(f"{PREFIX}demo-webhook")
    # The attack: repository code running in the demo service goes for the billing package's key.
    code, out = _run_inside(
        webhook,
        "import os\n"
        "print(sorted(os.listdir('/etc/kiln/keys')))\n"
        "print(len(open('/etc/kiln/keys/demo_private.pem').read()) > 0)\n"
        "try:\n"
        "    open('/etc/kiln/keys/billing_private.pem').read()\n"
        "except OSError as exc:\n"
        "    print(type(exc).__name__)\n"
        "for path in ('/etc/kiln/keys/demo_private.pem', '/app/x', '/tmp/x'):\n"
        "    try:\n"
        "        open(path, 'a').write('x'); print('wrote', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', path, exc.errno)\n",
    )
    assert code == 0, out
    assert out.splitlines() == [
        "['demo_private.pem', 'demo_public.pem']",
        "True",
        "FileNotFoundError",
        "refused /etc/kiln/keys/demo_private.pem 13",  # EACCES: 0444 (and the mount is read-only)
        "refused /app/x 30",  # EROFS: the root filesystem is read-only
        "wrote /tmp/x",
    ]
    billing_key = (Path(config_env["KILN_KEYS_DIR"]) / "billing_private.pem").read_bytes()
    code, out = _run_inside(webhook, "import os\nprint(os.getuid())\n")
    assert out.strip() == "65532" and billing_key.decode() not in out


def test_compose_volume_is_writable_by_the_app_user(client, deployed):
    _, result = deployed
    assert result.healthy, result.error
    worker = client.containers.get(f"{PREFIX}demo-storage-worker")
    code, out = _run_inside(worker, "open('/data/probe', 'w').write('ok'); print(open('/data/probe').read())")
    assert (code, out.strip()) == (0, "ok")


def test_a_package_without_its_own_keys_fails_the_deploy_naming_the_fix(client, tmp_path, config_env, images):
    """Only the package's own files are mounted, so a missing one is a clear refusal, not an empty mount."""
    empty = tmp_path / "keys"
    empty.mkdir()
    generate_keys(empty, "billing")  # someone else's keys are there; demo's are not
    config = load_config(OPERATOR_CONFIG, {**config_env, "KILN_KEYS_DIR": str(empty)})
    substrate = ComposeSubstrate(client, state_dir=tmp_path / "state", prefix=f"{PREFIX}nokeys-")
    inputs = scaffold_inputs(config, "demo", config_path="config.yaml", env={}, images=images)
    try:
        with pytest.raises(PermanentError, match=r"demo_private\.pem.*keys generate --package demo"):
            substrate.apply(inputs, 1)
        assert not client.containers.list(all=True, filters={"label": f"dev.kiln.stack={PREFIX}nokeys-demo"})
    finally:
        substrate.teardown(inputs.topology)
