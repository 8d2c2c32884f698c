"""The sandbox inside Kiln's own containers (docs/architecture.md, "Sandboxed steps"): what
docker-compose.yml grants the services that run repository code, and, on the real Docker Engine,
that exactly this is enough for bubblewrap and that Docker's default profile is not."""

from __future__ import annotations

import re
import shutil
import subprocess

import docker
import pytest
import yaml
from docker.errors import ContainerError

from tests.integration.test_compose_stack import SECRETS, compose_config

SANDBOXING = ("compiler", "imager-amd64", "imager-arm64", "deployer")
GRANTED = ["seccomp=unconfined", "no-new-privileges:true"]
BASE = "kiln-base:bookworm-amd64"
PROBE = ["bwrap", "--unshare-all", "--die-with-parent", "--clearenv", "--uid", "65534", "--gid", "65534",
         "--cap-drop", "ALL", "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink",
         "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin", "--dev", "/dev", "--tmpfs", "/tmp", "--",
         "/usr/bin/python3", "-c", "import os; print('sandboxed as', os.getuid())"]  # fmt: skip


def test_compose_lifts_only_seccomp_for_the_services_that_sandbox(tmp_path):
    result = compose_config(tmp_path, SECRETS)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name in SANDBOXING:
        assert services[name].get("security_opt") == GRANTED, name
        assert not services[name].get("privileged") and not services[name].get("cap_add"), name
    for name in ("gateway", "scanner", "reporter"):  # they run no repository code
        assert "security_opt" not in services[name], name


def _bwrap_mounts() -> dict[str, dict[str, str]]:
    """The host's bwrap and the libraries it links, mounted into the Debian base image."""
    bwrap = shutil.which("bwrap")
    assert bwrap, "bubblewrap is not installed: ./kiln-dev install"
    linked = subprocess.run(["ldd", bwrap], capture_output=True, text=True).stdout
    libraries = re.findall(r"=> (/\S+)", linked)
    return {path: {"bind": path, "mode": "ro"} for path in [bwrap, *libraries] if "libc.so" not in path}


@pytest.mark.parametrize("user", ["10001", "root"])  # Kiln's image user; the deployer runs as root
def test_bubblewrap_works_in_a_container_with_exactly_what_compose_grants(user):
    client = docker.from_env()
    client.images.get(BASE)  # built by ./kiln-dev up; missing = a failure, never a skip
    options = {"user": user, "volumes": _bwrap_mounts(), "remove": True, "stderr": True}
    cap_drop = ["ALL"] if user != "root" else None
    output = client.containers.run(BASE, PROBE, security_opt=GRANTED, cap_drop=cap_drop, **options)
    assert b"sandboxed as 65534" in output
    with pytest.raises(ContainerError, match="No permissions to create new namespace"):
        default_seccomp = ["no-new-privileges:true"]
        client.containers.run(BASE, PROBE, security_opt=default_seccomp, cap_drop=cap_drop, **options)
