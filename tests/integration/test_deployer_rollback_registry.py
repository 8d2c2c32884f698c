"""The rollback's "still in the registry?" check against a real Distribution registry of its own
(Debian's docker-registry, deletion enabled): an image pruned by digest is named, the others
pass, and a registry that does not answer is a transient error (retried), not a prune."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from services.deployer.rollback import registry_check
from shared.bus import TransientError
from tests.integration.test_registry_distribution import push_tiny_image
from tests.integration.test_registry_gc import _free_port, running_registry

pytestmark = pytest.mark.integration


def settings(address: str) -> SimpleNamespace:
    return SimpleNamespace(
        registry_url=address, registry_username=None, registry_password=None, registry_insecure_hosts=""
    )


def test_pruned_images_are_named_and_kept_ones_pass(tmp_path):
    storage, address = tmp_path / "data", f"127.0.0.1:{_free_port()}"
    config = tmp_path / "config.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {address}\n"
    )
    repo = "kiln/axion-webhook-demo"
    with running_registry(config, address) as client:
        kept = push_tiny_image(client, repo, "b1", "amd64", "build 1")
        pruned = push_tiny_image(client, repo, "b2", "amd64", "build 2")
        client.delete_manifest(repo, pruned)
        missing = registry_check(settings(address))
        references = [
            f"{address}/{repo}@{kept}",
            f"{address}/{repo}@{pruned}",
            f"elsewhere:5000/{repo}@{kept}",
        ]
        gone = missing(references)
    assert gone[0] == f"{address}/{repo}@{pruned}"
    assert gone[1].startswith(f"elsewhere:5000/{repo}@{kept} (not on {address}")
    assert len(gone) == 2
    with pytest.raises(TransientError, match="cannot check build images in the registry"):
        missing([f"{address}/{repo}@{kept}"])  # the registry is stopped now
