"""docker-compose.yml is valid for Docker Compose, complete, and refuses to start without secrets;
docker-compose.offline.yml (no Docker Hub) swaps every image for one built here.

These validate the files with `docker-compose config`; the stack itself is run for real by
`./kiln-dev compose-smoke` (minutes, not CI: docs/operations.md).
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest
import yaml

from shared.bus.topology import SERVICES

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]
SECRETS = {
    "RABBITMQ_PASSWORD": "r-test",
    "MYSQL_PASSWORD": "m-test",
    "MYSQL_ROOT_PASSWORD": "mr-test",
    "KILN_REGISTRY_USERNAME": "registry-test-user",
    "KILN_ATTEST_GPG_FINGERPRINT": "0123456789ABCDEF0123456789ABCDEF01234567",  # public, not a key
    # generated per run: the gateway's keys must be >= 32 bytes, and none is committed
    **{
        name: secrets.token_hex(16)
        for name in (
            "KILN_REGISTRY_PASSWORD",
            "KILN_API_TOKEN",
            "KILN_BITBUCKET_CLOUD_SECRET",
            "KILN_BITBUCKET_SERVER_SECRET",
            "KILN_GITHUB_SECRET",
        )
    },
}
BROKER_USERS = tuple(spec.name for spec in SERVICES)  # compose needs each one's password
SECRETS |= {f"KILN_AMQP_PASSWORD_{name.upper()}": f"amqp-{name}-test" for name in BROKER_USERS}


OFFLINE = ("docker-compose.yml", "docker-compose.offline.yml")
KILN_SERVICES = ("gateway", "compiler", "scanner", "deployer", "reporter", "imager-amd64", "imager-arm64")
INFRA = ("rabbitmq", "mysql", "registry", "mailpit", "engine")


def compose_config(
    tmp_path: Path, env: dict[str, str], files: tuple[str, ...] = ("docker-compose.yml",)
) -> subprocess.CompletedProcess:
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("KILN_")}
    file_args = [arg for name in files for arg in ("-f", str(ROOT / name))]
    return subprocess.run(
        ["docker-compose", *file_args, "--env-file", str(empty_env_file), "config"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_is_valid_and_has_the_whole_stack(tmp_path):
    result = compose_config(tmp_path, SECRETS)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {*INFRA, "migrate", "broker-users", *KILN_SERVICES} <= set(services)
    for name in KILN_SERVICES:
        service = services[name]
        assert "healthcheck" in service, name
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        # each service on its own broker user, made by the one-shot broker-users (docs/operations.md)
        assert service["depends_on"]["broker-users"]["condition"] == "service_completed_successfully"
        user = name.split("-", 1)[0]
        amqp = service["environment"]["KILN_AMQP_URL"]
        assert amqp == f"amqp://kiln-{user}:amqp-{user}-test@rabbitmq:5672/", name
        module = service["command"][2]
        assert (ROOT / module.replace(".", "/")).is_dir(), f"{name} runs {module}, which does not exist"
    assert services["imager-arm64"]["command"][-1] == "linux/arm64"
    provisioner = services["broker-users"]
    assert provisioner["command"][2:] == ["shared.bus", "provision", "--passwords-from-env"]
    assert set(provisioner["environment"]) == {
        "KILN_BROKER_ADMIN_URL",
        "KILN_BROKER_MANAGEMENT_URL",
        *(f"KILN_AMQP_PASSWORD_{name.upper()}" for name in BROKER_USERS),
    }  # the admin's password and the six service passwords, no other secret


def test_compose_refuses_to_start_without_its_secrets(tmp_path):
    result = compose_config(tmp_path, {})
    assert result.returncode != 0
    assert "set RABBITMQ_PASSWORD in .env" in result.stderr


def test_no_secret_value_is_written_in_the_compose_file():
    text = (ROOT / "docker-compose.yml").read_text()
    for value in SECRETS.values():
        assert value not in text
    assert "PASSWORD: ${" in text  # every password is substituted from the environment


def merged(tmp_path: Path, files: tuple[str, ...] = ("docker-compose.yml",), **env: str) -> dict:
    result = compose_config(tmp_path, {**SECRETS, **env}, files)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def test_engine_clients_share_the_engines_network_and_paths(tmp_path):
    """The image proof probes ports the engine publishes on 127.0.0.1, and the deployer hands the
    engine paths to mount: both only hold in the engine's network namespace and with equal paths."""
    services = merged(tmp_path)
    engine_mounts = {volume.split(":")[1] for volume in services["engine"]["volumes"]}
    for name in ("imager-amd64", "imager-arm64", "deployer"):
        assert services[name]["network_mode"] == "service:engine", name
        assert services[name]["environment"]["DOCKER_HOST"] == "tcp://127.0.0.1:2375", name
        assert services[name]["depends_on"]["engine"]["condition"] == "service_healthy", name
    deployer_env = services["deployer"]["environment"]
    assert deployer_env["KILN_DEPLOYER_STATE_DIR"] in engine_mounts
    assert deployer_env["KILN_KEYS_DIR"].startswith("/var/lib/kiln/keys/")
    assert deployer_env["KILN_KEYS_DIR"] in engine_mounts
    assert "--insecure-registry=registry:5000" in services["engine"]["command"]
    registry = deployer_env["KILN_REGISTRY_URL"]
    assert registry == deployer_env["KILN_DEPLOYMENT_REGISTRY_HOST"] == "registry:5000"


def test_package_keys_are_mounted_only_where_needed_one_package_directory_each(tmp_path):
    """The compiler checks a package's key pair exists and the deployer hands the package's
    directory to its containers; no other Kiln service sees any key, and none sees every package."""
    services = merged(tmp_path)
    with_keys = {
        name: [v for v in svc.get("volumes", []) if ":/var/lib/kiln/keys" in v]
        for name, svc in services.items()
    }
    assert {name for name, mounts in with_keys.items() if mounts} == {"compiler", "deployer", "engine"}
    for name in ("compiler", "deployer", "engine"):
        (mount,) = with_keys[name]
        assert mount.endswith(":/var/lib/kiln/keys/demo:ro"), (name, mount)
    assert services["compiler"]["environment"]["KILN_CONFIG_PATH"] == "/etc/kiln/config.yaml"
    config_mount = next(v for v in services["compiler"]["volumes"] if v.endswith(":/etc/kiln/config.yaml:ro"))
    assert config_mount.split(":")[0].endswith("examples/operator/config.yaml")


def test_offline_override_builds_every_image_from_the_local_base(tmp_path):
    services = merged(tmp_path, OFFLINE, KILN_PIP_CA_FILE="build/compose/pip-ca.pem")
    assert set(merged(tmp_path)) == set(services)  # swaps images, adds no service
    for name in INFRA:
        build = services[name]["build"]
        assert (ROOT / build["dockerfile"]).is_file(), name
        assert build["args"]["BASE"] == "kiln-base:bookworm-amd64", name
        assert services[name]["image"].startswith("kiln-offline/"), name
    for name in (*KILN_SERVICES, "migrate", "broker-users"):
        args = services[name]["build"]["args"]
        assert args == {"BASE": "kiln-python:3.11", "PIP_CA_FILE": "build/compose/pip-ca.pem"}, name
        assert services[name]["image"] == "kiln:local", name
    # Everything else of the stack is the main file's: health checks, dependencies, commands.
    assert services["deployer"]["network_mode"] == "service:engine"
    assert services["gateway"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    engine = services["engine"]
    assert not engine.get("privileged")
    assert engine["cap_add"] == ["ALL"] and engine["cap_drop"] == ["SYS_RESOURCE"]


def test_offline_override_and_smoke_additions_validate(tmp_path):
    files = (*OFFLINE, "scripts/dev/compose_smoke.yml")
    services = merged(tmp_path, files, KILN_SMOKE_REPO=str(tmp_path))
    assert services["gateway"]["environment"]["KILN_WEBHOOKS_CLONE_URL"] == "file:///srv/kiln/example-repo"
    assert any(v.endswith(":/srv/kiln/example-repo:ro") for v in services["compiler"]["volumes"])


def test_the_pip_ca_never_reaches_the_final_image():
    """PIP_CA_FILE is used by the dependencies stage only; the final stage copies the venv out."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    final_stage = dockerfile.rsplit("\nFROM ", 1)[1]
    assert final_stage.startswith("toolchain\n")
    assert "PIP_CA" not in final_stage and "pip-ca" not in final_stage
    assert "COPY --from=dependencies /opt/kiln/venv /opt/kiln/venv" in final_stage
