"""Compiled artifacts through the real local registry and through a shared directory."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from shared.artifacts import ARTIFACT_TYPE, pack_directory, pull_artifact, push_artifact
from shared.registry import DigestMismatch, NotFound, RegistryClient
from shared.registry import manifests as mf

pytestmark = pytest.mark.integration

REGISTRY = os.environ.get("KILN_REGISTRY_URL", "127.0.0.1:5000")
PROJECT = f"kiln-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def client():
    username, password = os.environ.get("KILN_REGISTRY_USERNAME"), os.environ.get("KILN_REGISTRY_PASSWORD")
    assert username and password, "source .kiln/dev.env (./kiln-dev services) for KILN_REGISTRY_* first"
    with RegistryClient(REGISTRY, username, password) as registry:
        yield registry


def make_tree(root: Path, marker: str = "1") -> Path:
    (root / "factory" / "core").mkdir(parents=True)
    (root / "factory" / "core" / "models.cpython-311-x86_64-linux-gnu.so").write_bytes(
        b"\x7fELF" + marker.encode()
    )
    (root / "factory" / "__init__.py").write_text("")
    script = root / "bin" / "start"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    (root / "bin" / "link").symlink_to("start")
    return root


def same_tree(a: Path, b: Path) -> bool:
    def listing(root: Path):
        return sorted(
            (p.relative_to(root).as_posix(), p.is_symlink(), p.read_bytes() if p.is_file() else b"")
            for p in root.rglob("*")
        )

    return listing(a) == listing(b)


def test_registry_round_trip_verifies_digests(client, tmp_path):
    tree = make_tree(tmp_path / "out")
    store = f"{client.host}/{PROJECT}"
    stored = push_artifact(
        tree,
        store=store,
        package="demo",
        build="b7",
        platform="linux/arm64",
        source_digest="sha256:" + "a" * 64,
        client=client,
    )
    repo = f"{PROJECT}/kiln-artifacts/demo"
    assert stored.reference == f"{client.host}/{repo}@{stored.digest}"
    assert client.manifest_digest(repo, "b7-arm64") == stored.digest
    manifest = json.loads(client.get_manifest(repo, stored.digest)[2])
    assert manifest["artifactType"] == ARTIFACT_TYPE
    assert manifest["annotations"]["dev.kiln.platform"] == "linux/arm64"

    pulled = pull_artifact(stored.reference, tmp_path / "pulled", client=client)
    assert same_tree(tree, pulled)
    assert os.access(pulled / "bin" / "start", os.X_OK)


def test_same_tree_same_digest_and_layer_shared_across_builds(client, tmp_path):
    first = make_tree(tmp_path / "first")
    second = make_tree(tmp_path / "second")  # same content, other inode times and paths
    os.utime(second / "factory" / "__init__.py", (1, 1))
    assert pack_directory(first) == pack_directory(second)
    store = f"{client.host}/{PROJECT}"
    push = {"store": store, "package": "demo", "platform": "linux/amd64", "client": client}
    a = push_artifact(first, build="b1", **push)
    b = push_artifact(second, build="b1", **push)
    c = push_artifact(second, build="b2", **push)
    assert a.digest == b.digest != c.digest  # the build id is an annotation of the manifest
    repo = f"{PROJECT}/kiln-artifacts/demo"
    layers = [json.loads(client.get_manifest(repo, s.digest)[2])["layers"][0]["digest"] for s in (a, c)]
    assert layers[0] == layers[1] == mf.sha256_digest(pack_directory(first))


def test_a_wrong_digest_is_refused(client, tmp_path):
    stored = push_artifact(
        make_tree(tmp_path / "out"),
        store=f"{client.host}/{PROJECT}",
        package="demo",
        build="b3",
        platform="linux/amd64",
        client=client,
    )
    tampered = stored.reference[:-4] + ("0000" if not stored.reference.endswith("0000") else "1111")
    with pytest.raises(NotFound):
        pull_artifact(tampered, tmp_path / "never", client=client)
    with pytest.raises(ValueError, match="pinned by digest"):
        pull_artifact(stored.reference.split("@")[0] + ":b3-amd64", tmp_path / "never", client=client)
    assert not (tmp_path / "never").exists()


def test_shared_directory_round_trip_and_corruption(tmp_path):
    tree = make_tree(tmp_path / "out")
    store = f"file://{tmp_path / 'shared'}"
    stored = push_artifact(tree, store=store, package="demo", build="b1", platform="linux/amd64")
    again = push_artifact(tree, store=store, package="demo", build="b1", platform="linux/amd64")
    assert stored == again
    assert (tmp_path / "shared" / "demo" / "b1-amd64").read_text().strip() == stored.digest
    assert same_tree(tree, pull_artifact(stored.reference, tmp_path / "pulled"))

    blob = tmp_path / "shared" / "demo" / (stored.digest.replace(":", "-") + ".tar.gz")
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(DigestMismatch):
        pull_artifact(stored.reference, tmp_path / "corrupt")
    assert not (tmp_path / "corrupt").exists()


def test_an_app_config_document_round_trips_by_digest_and_only_as_its_own_type(client, tmp_path):
    from shared.document_artifacts import APP_CONFIG_TYPE, pull_document, push_document

    data = b'{"package": "demo", "schema": 1, "sections": {"database": {"host": "db"}}}\n'
    stored = push_document(data, store=f"{client.host}/{PROJECT}", package="demo", build="b7", client=client)
    assert stored.reference == f"{client.host}/{PROJECT}/kiln-artifacts/demo@{stored.digest}"
    assert pull_document(stored.reference, client=client) == data
    _, _, manifest = client.get_manifest(f"{PROJECT}/kiln-artifacts/demo", "b7-app-config")
    assert json.loads(manifest)["artifactType"] == APP_CONFIG_TYPE
    # A compiled tree's reference is not an app config, whatever an event says.
    tree = push_artifact(
        make_tree(tmp_path / "t"), store=f"{client.host}/{PROJECT}", package="demo", build="b7",
        platform="linux/amd64", client=client,
    )  # fmt: skip
    with pytest.raises(ValueError, match="is not a Kiln app config"):
        pull_document(tree.reference, client=client)
