"""Smoke tests: every real part `./kiln-dev services` provides answers and works.

They read the variables of .kiln/dev.env and fail (never skip) when a part is missing,
so a broken machine is reported here before the feature tests fail in confusing ways.
"""

import os
import shutil
import subprocess

import docker
import httpx
import pytest

pytestmark = pytest.mark.integration

REQUIRED_VARIABLES = (
    "KILN_REGISTRY_URL",
    "KILN_REGISTRY_USERNAME",
    "KILN_REGISTRY_PASSWORD",
    "KILN_BASE_IMAGE_AMD64",
    "KILN_BASE_IMAGE_ARM64",
    "KILN_TRIVY",
)

BASE_IMAGES = (
    ("KILN_BASE_IMAGE_AMD64", "amd64", "x86_64"),
    ("KILN_BASE_IMAGE_ARM64", "arm64", "aarch64"),
)


@pytest.fixture(scope="module")
def dev_env() -> dict[str, str]:
    missing = [name for name in REQUIRED_VARIABLES if not os.environ.get(name)]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run ./kiln-dev services; source .kiln/dev.env")
    return {name: os.environ[name] for name in REQUIRED_VARIABLES}


@pytest.fixture(scope="module")
def docker_client() -> docker.DockerClient:
    client = docker.from_env()
    yield client
    client.close()


def registry_get(dev_env: dict[str, str], path: str, *, authenticated: bool) -> httpx.Response:
    auth = (dev_env["KILN_REGISTRY_USERNAME"], dev_env["KILN_REGISTRY_PASSWORD"])
    return httpx.get(
        f"http://{dev_env['KILN_REGISTRY_URL']}{path}",
        auth=auth if authenticated else None,
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=10,
    )


def test_docker_daemon_answers(docker_client: docker.DockerClient) -> None:
    assert docker_client.ping() is True


def test_registry_refuses_anonymous_requests(dev_env: dict[str, str]) -> None:
    assert registry_get(dev_env, "/v2/", authenticated=False).status_code == 401


def test_registry_accepts_the_dev_credentials(dev_env: dict[str, str]) -> None:
    assert registry_get(dev_env, "/v2/", authenticated=True).status_code == 200


@pytest.mark.parametrize(("variable", "architecture", "machine"), BASE_IMAGES)
def test_base_image_runs_python_on_its_architecture(
    dev_env: dict[str, str],
    docker_client: docker.DockerClient,
    variable: str,
    architecture: str,
    machine: str,
) -> None:
    image = docker_client.images.get(dev_env[variable])
    assert image.attrs["Architecture"] == architecture

    # arm64 runs under QEMU through binfmt: this proves the emulation path works too.
    output = docker_client.containers.run(
        image.id, ["sh", "-c", "uname -m && python3 -c 'print(6 * 7)'"], remove=True
    )
    assert output.decode().split() == [machine, "42"]


@pytest.mark.parametrize(("variable", "architecture", "machine"), BASE_IMAGES)
def test_base_image_is_in_the_registry(
    dev_env: dict[str, str], variable: str, architecture: str, machine: str
) -> None:
    reference = dev_env[variable]
    registry = dev_env["KILN_REGISTRY_URL"]
    assert reference.startswith(f"{registry}/"), f"{variable} should point at the local registry"
    repository, tag = reference.removeprefix(f"{registry}/").rsplit(":", 1)

    response = registry_get(dev_env, f"/v2/{repository}/manifests/{tag}", authenticated=True)

    assert response.status_code == 200, response.text


def test_arm64_cross_compiler_is_installed() -> None:
    compiler = shutil.which("aarch64-linux-gnu-gcc")
    assert compiler, "aarch64-linux-gnu-gcc missing: run ./kiln-dev install"
    assert os.path.exists("/usr/include/aarch64-linux-gnu/python3.11/pyconfig.h"), (
        "arm64 Python headers missing (libpython3.11-dev:arm64): run ./kiln-dev install"
    )


def test_trivy_runs(dev_env: dict[str, str]) -> None:
    result = subprocess.run([dev_env["KILN_TRIVY"], "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Version:" in result.stdout
