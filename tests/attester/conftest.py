"""The attester's tests run on the real registry, trivy, gpg and skopeo of the dev stack.

Images are copies of the local base image (`kiln/base:bookworm-amd64`, a real Debian rootfs) in a
repository of their own per test, so signatures of one test never satisfy another's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.attester import keys
from shared.registry import RegistryClient
from shared.registry import manifests as mf

RUN = uuid.uuid4().hex[:6]
BASE_REPO = "kiln/base"
BASE_TAG = "bookworm-amd64"


def dev_env() -> dict[str, str]:
    names = ("KILN_REGISTRY_URL", "KILN_REGISTRY_USERNAME", "KILN_REGISTRY_PASSWORD", "KILN_TRIVY")
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: source .kiln/dev.env (./kiln-dev services) first")
    for tool in ("gpg", "skopeo"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is not installed: ./kiln-dev install (apt-get install -y {tool})")
    return {n: os.environ[n] for n in names}


@dataclass(frozen=True)
class PushedImage:
    host: str
    repo: str  # path inside the registry
    digest: str

    @property
    def repository(self) -> str:
        return f"{self.host}/{self.repo}"

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"


@pytest.fixture(scope="session")
def registry() -> Iterator[RegistryClient]:
    env = dev_env()
    with RegistryClient(
        env["KILN_REGISTRY_URL"], env["KILN_REGISTRY_USERNAME"], env["KILN_REGISTRY_PASSWORD"]
    ) as client:
        yield client


@pytest.fixture
def make_image(registry: RegistryClient):
    def make(name: str) -> PushedImage:
        repo = f"kiln-test/attester-{RUN}-{name}"
        media_type, digest, data = registry.get_manifest(BASE_REPO, BASE_TAG)
        assert media_type in mf.IMAGE_MANIFESTS, f"{BASE_REPO}:{BASE_TAG} is a {media_type}"
        for blob in mf.blob_descriptors(json.loads(data)):
            registry.copy_blob(repo, blob["digest"], BASE_REPO)
        registry.put_manifest(repo, "t", data, media_type)
        return PushedImage(registry.host, repo, digest)

    return make


@pytest.fixture(scope="session")
def operator_keys(tmp_path_factory) -> Iterator[keys.GeneratedKeys]:
    dev_env()
    made = keys.generate(tmp_path_factory.mktemp("keys") / "attest")
    yield made
    stop_gpg_agent(made.gpg_home)


@pytest.fixture(scope="session")
def other_keys(tmp_path_factory) -> Iterator[keys.GeneratedKeys]:
    """Someone else's keys: their signatures must be refused."""
    dev_env()
    made = keys.generate(tmp_path_factory.mktemp("other") / "attest", name="Not Kiln")
    yield made
    stop_gpg_agent(made.gpg_home)


def stop_gpg_agent(home: Path) -> None:
    """gpg starts an agent per keyring; the test run started it, the test run stops it."""
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
