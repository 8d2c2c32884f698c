"""The documented maintenance procedure end to end on a private registry: prune, then offline GC.

Starts its own Distribution (Debian's docker-registry, installed by ./kiln-dev install) on a free
loopback port with its own storage, because garbage collection needs the registry stopped. Proves
that prune + `garbage-collect` (without --delete-untagged, see docs/registry.md) frees the pruned
builds' bytes while the kept multi-arch index and its cross-repository children still resolve.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from shared.registry import RegistryClient, RegistryUnavailable
from shared.registry import manifests as mf
from tests.integration.test_registry_distribution import push_tiny_image

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _blob_count(storage: Path) -> int:
    return sum(1 for _ in (storage / "docker/registry/v2/blobs/sha256").glob("*/*/data"))


@contextmanager
def running_registry(config: Path, address: str) -> Iterator[RegistryClient]:
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is not installed: run ./kiln-dev install"
    process = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        with RegistryClient(address) as client:
            for _ in range(100):
                try:
                    client.ping()
                    break
                except RegistryUnavailable:
                    time.sleep(0.1)
            yield client
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_prune_then_offline_gc_frees_old_builds_and_keeps_the_index(tmp_path):
    storage, address = tmp_path / "data", f"127.0.0.1:{_free_port()}"
    config = tmp_path / "config.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {address}\n"
    )
    repo, arm_repo = "kiln/axion-demo-pkg", "kiln/axion-demo-pkg-arm"
    with running_registry(config, address) as client:
        for n in range(1, 5):
            amd = push_tiny_image(client, repo, None, "amd64", f"amd {n}")
            arm = push_tiny_image(client, arm_repo, f"b{n}", "arm64", f"arm {n}")
            client.push_index(repo, f"b{n}", [("linux/amd64", repo, amd), ("linux/arm64", arm_repo, arm)])
        client.push_index(repo, "latest", [("linux/amd64", repo, amd), ("linux/arm64", arm_repo, arm)])
        client.prune(repo, keep=2)
        client.prune(arm_repo, keep=2)
    before = _blob_count(storage)

    gc = subprocess.run(["docker-registry", "garbage-collect", str(config)], capture_output=True, text=True)
    assert gc.returncode == 0, gc.stderr

    # Each build stores 7 blobs (2 layers, 2 configs, 2 image manifests, 1 index); tiny configs
    # of equal content are shared, so count: the two pruned builds' blobs go, nothing kept goes.
    after = _blob_count(storage)
    assert after < before
    print(f"blobs before GC {before}, after {after}")
    with running_registry(config, address) as client:
        assert sorted(client.list_tags(repo)) == ["b3", "b4", "latest"]
        for tag in ("b3", "b4", "latest"):
            client.image_size(repo, tag)  # index → both children → their blobs: all resolve
            _, _, index = client.get_manifest(repo, tag)
            for child in json.loads(index)["manifests"]:
                image = json.loads(client.get_manifest(repo, child["digest"])[2])
                for blob in mf.blob_descriptors(image):
                    assert client.get_blob(repo, blob["digest"])
