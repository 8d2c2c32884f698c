"""RegistryClient against the real local registry (Distribution 2.8, htpasswd) that ./kiln-dev starts.

Images are built in pure Python (a one-file layer, a config, a Docker schema 2 manifest), so these
tests need no Docker daemon. Every repository lives under a per-run prefix.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import uuid

import pytest

from shared.registry import NotFound, RegistryAuthError, RegistryClient, RegistryUnavailable
from shared.registry import manifests as mf

pytestmark = pytest.mark.integration

REGISTRY = os.environ.get("KILN_REGISTRY_URL", "127.0.0.1:5000")
USERNAME = os.environ.get("KILN_REGISTRY_USERNAME")
PASSWORD = os.environ.get("KILN_REGISTRY_PASSWORD")
PREFIX = f"kiln-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def client():
    assert USERNAME and PASSWORD, "source .kiln/dev.env (./kiln-dev services) for KILN_REGISTRY_* first"
    with RegistryClient(REGISTRY, USERNAME, PASSWORD) as registry:
        registry.ping()
        yield registry


def push_tiny_image(client: RegistryClient, repo: str, tag: str | None, arch: str, content: str) -> str:
    """A one-file image for `arch`, pushed as Docker schema 2 like `docker push` does; returns its digest.

    tag None: pushed by digest only (untagged), as the copies an index holds are."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        body = content.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = mf.canonical_json(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["cat", "/hello.txt"]},
            "rootfs": {"type": "layers", "diff_ids": [mf.sha256_digest(raw.getvalue())]},
        }
    )
    manifest = mf.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": mf.DOCKER_MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": client.push_blob(repo, config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": client.push_blob(repo, layer),
                    "size": len(layer),
                }
            ],
        }
    )
    return client.put_manifest(repo, tag or mf.sha256_digest(manifest), manifest, mf.DOCKER_MANIFEST)


def test_wrong_password_is_a_registry_auth_error():
    with RegistryClient(REGISTRY, USERNAME, "not-the-password") as wrong, pytest.raises(RegistryAuthError):
        wrong.list_repositories()
    with RegistryClient(REGISTRY) as anonymous, pytest.raises(RegistryAuthError, match="anonymous"):
        anonymous.push_blob(f"{PREFIX}/denied", b"x")


def test_nothing_listening_is_transient():
    with RegistryClient("127.0.0.1:1", USERNAME, PASSWORD) as nowhere, pytest.raises(RegistryUnavailable):
        nowhere.ping()


def test_push_list_read_and_size(client):
    repo = f"{PREFIX}/basic"
    digest = push_tiny_image(client, repo, "v1", "amd64", "hello")
    assert repo in client.list_repositories()
    assert client.list_tags(repo) == ["v1"]
    assert client.manifest_digest(repo, "v1") == digest
    media_type, fetched_digest, data = client.get_manifest(repo, "v1")
    assert (media_type, fetched_digest) == (mf.DOCKER_MANIFEST, digest)
    assert client.image_size(repo, "v1") == mf.image_bytes(json.loads(data))
    layer = json.loads(data)["layers"][0]["digest"]
    assert client.blob_exists(repo, layer)
    assert not client.blob_exists(repo, mf.sha256_digest(b"never pushed"))
    with pytest.raises(NotFound):
        client.get_manifest(repo, "missing")
    with pytest.raises(NotFound):
        client.list_tags(f"{PREFIX}/no-such-repository")


def test_index_over_amd64_and_arm_repositories_lists_both_platforms(client):
    amd_repo, arm_repo = f"{PREFIX}/axion-report-demo", f"{PREFIX}/axion-report-demo-arm"
    amd = push_tiny_image(client, amd_repo, "b1", "amd64", "amd64 build")
    arm = push_tiny_image(client, arm_repo, "b1", "arm64", "arm64 build")
    refs = [("linux/amd64", amd_repo, amd), ("linux/arm64", arm_repo, arm)]

    index_digest = client.push_index(amd_repo, "latest", refs)

    media_type, digest, data = client.get_manifest(amd_repo, "latest")
    assert (media_type, digest) == (mf.OCI_INDEX, index_digest)
    entries = json.loads(data)["manifests"]
    assert {(e["platform"]["architecture"], e["digest"]) for e in entries} == {("amd64", amd), ("arm64", arm)}
    assert all(e["mediaType"] == mf.DOCKER_MANIFEST for e in entries)
    # the arm64 image now resolves inside the amd64 repository, blobs and all
    _, _, arm_manifest = client.get_manifest(amd_repo, arm)
    assert all(
        client.blob_exists(amd_repo, d["digest"]) for d in mf.blob_descriptors(json.loads(arm_manifest))
    )
    assert client.image_size(amd_repo, "latest") == client.image_size(amd_repo, amd) + client.image_size(
        arm_repo, arm
    )
    assert client.push_index(amd_repo, "latest", refs) == index_digest  # idempotent


def test_mount_copies_a_blob_between_repositories(client):
    source, target = f"{PREFIX}/mount-from", f"{PREFIX}/mount-to"
    digest = client.push_blob(source, b"mounted, not uploaded")
    assert client.mount_blob(target, digest, source)
    assert client.get_blob(target, digest) == b"mounted, not uploaded"


def _push_builds(client: RegistryClient, repo: str, count: int) -> dict[str, str]:
    digests = {
        f"b{n}": push_tiny_image(client, repo, f"b{n}", "amd64", f"build {n}") for n in range(1, count + 1)
    }
    client.put_manifest(repo, "latest", client.get_manifest(repo, f"b{count}")[2], mf.DOCKER_MANIFEST)
    return digests


def test_prune_keeps_exactly_the_newest_n_builds(client):
    repo = f"{PREFIX}/prune"
    digests = _push_builds(client, repo, 12)  # b10 > b9: numeric, not lexical order

    dry = client.prune(repo, keep=3, dry_run=True)
    assert dry.kept_tags == ["b12", "b11", "b10", "latest"]
    assert set(dry.deleted) == {digests[f"b{n}"] for n in range(1, 10)}
    assert len(client.list_tags(repo)) == 13  # dry run deleted nothing

    report = client.prune(repo, keep=3)
    assert sorted(client.list_tags(repo)) == ["b10", "b11", "b12", "latest"]
    assert report.deleted_tags == [f"b{n}" for n in range(9, 0, -1)]
    with pytest.raises(NotFound):
        client.get_manifest(repo, digests["b1"])
    assert client.prune(repo, keep=3).deleted == {}  # nothing left to do


def test_prune_keeps_what_an_index_needs_and_drops_old_indexes_with_their_images(client):
    repo, arm_repo = f"{PREFIX}/prune-multi", f"{PREFIX}/prune-multi-arm"
    kept_images = []
    for n in (1, 2):
        amd = push_tiny_image(client, repo, None, "amd64", f"amd {n}")
        arm = push_tiny_image(client, arm_repo, f"b{n}", "arm64", f"arm {n}")
        client.push_index(repo, f"b{n}", [("linux/amd64", repo, amd), ("linux/arm64", arm_repo, arm)])
        kept_images = [amd, arm]

    report = client.prune(repo, keep=1)
    assert sorted(client.list_tags(repo)) == ["b2"]
    assert len(report.deleted) == 3  # the b1 index and both images it listed
    for image in kept_images:
        client.get_manifest(repo, image)  # b2's images survive


def test_cli_lists_tags_and_prunes(client):
    repo = f"{PREFIX}/cli"
    _push_builds(client, repo, 3)
    env = {**os.environ, "KILN_REGISTRY_URL": REGISTRY}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "shared.registry", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert sorted(cli("tags", "--repo", repo).stdout.split()) == ["b1", "b2", "b3", "latest"]
    dry = cli("prune", "--repo", repo, "--keep", "1", "--dry-run")
    assert dry.returncode == 0 and "would delete 2 manifest(s)" in dry.stdout
    assert cli("prune", "--prefix", f"{PREFIX}/cl", "--keep", "1").returncode == 0
    assert sorted(cli("tags", "--repo", repo).stdout.split()) == ["b3", "latest"]
    refused = subprocess.run(
        [sys.executable, "-m", "shared.registry", "list"],
        env={**env, "KILN_REGISTRY_PASSWORD": "not-the-password"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 3 and "not-the-password" not in refused.stderr + refused.stdout


def test_index_over_the_docker_pushed_base_images(client):
    """The real thing: Docker-pushed schema 2 images (kiln-dev's base images), mounted, not re-uploaded."""
    references = [os.environ.get("KILN_BASE_IMAGE_AMD64"), os.environ.get("KILN_BASE_IMAGE_ARM64")]
    assert all(references), "source .kiln/dev.env (./kiln-dev services) for KILN_BASE_IMAGE_* first"
    refs = []
    for platform, reference in zip(("linux/amd64", "linux/arm64"), references, strict=True):
        host_and_repo, _, tag = reference.rpartition(":")
        repo = host_and_repo.split("/", 1)[1]
        refs.append((platform, repo, client.manifest_digest(repo, tag)))
    target = f"{PREFIX}/base-multi"

    index_digest = client.push_index(target, "latest", refs)

    _, _, data = client.get_manifest(target, index_digest)
    assert [e["platform"]["architecture"] for e in json.loads(data)["manifests"]] == ["amd64", "arm64"]
    assert client.image_size(target, "latest") > 50_000_000
