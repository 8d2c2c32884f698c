"""The deployer deploys only derived repositories pinned by the digest image.pushed reported."""

from __future__ import annotations

import pytest

from services.deployer.gate import ImageState
from services.deployer.handlers import on_manifest_pushed
from services.deployer.references import refused_images
from shared.bus import PermanentError
from shared.config import parse_config
from shared.events import ManifestPushed

DIGEST = "sha256:" + "c" * 64
CONFIG = parse_config(
    """
factories: {core: {path: core}}
tiers: {minimal: {requirements: []}}
packages:
  demo:
    factories: [core]
    keys: {dir: /srv/keys/demo}
    services:
      web: {command: [python3, -m, core.web], factories: [core], tier: minimal}
    deployment:
      registry: {host: "reg:5000", project: kiln, tenant: acme}
""",
    env={},
)
PKG = CONFIG.package("demo")


def image(repository: str, digest: str | None = DIGEST, platform: str = "linux/amd64") -> ImageState:
    return ImageState("web", platform, True, repository=repository, digest=digest)


def test_derived_repositories_pinned_by_digest_may_be_deployed():
    assert refused_images([image("reg:5000/kiln/tenants/acme/axion-web-demo")], "demo", PKG) == []
    arm = image("reg:5000/kiln/tenants/acme/axion-web-demo-arm", platform="linux/arm64")
    assert refused_images([arm], "demo", PKG) == []


def test_foreign_repositories_and_tags_without_digest_are_refused_with_the_reason():
    (foreign,) = refused_images([image("evil.example/kiln/tenants/acme/axion-web-demo")], "demo", PKG)
    assert foreign.startswith("web (linux/amd64): repository 'evil.example/")
    assert "reg:5000/kiln/tenants/acme/<version>-web-demo" in foreign
    assert "packages.demo.deployment.registry" in foreign
    (untenanted,) = refused_images([image("reg:5000/kiln/axion-web-demo")], "demo", PKG)
    assert "tenants/acme" in untenanted
    (tag_only,) = refused_images(
        [image("reg:5000/kiln/tenants/acme/axion-web-demo", digest=None)], "demo", PKG
    )
    assert "no digest" in tag_only


class Context:
    build_id = "b-1"
    package = "demo"


class Store:
    def __init__(self):
        self.builds = []

    def ensure_build(self, build_id, package):
        self.builds.append(build_id)


def test_an_index_outside_the_operators_registry_is_refused():
    index = dict(target="web", tag="b1-multiarch", digest=DIGEST, platforms=("linux/amd64", "linux/arm64"))
    store = Store()
    good = ManifestPushed(repository="reg:5000/kiln/tenants/acme/axion-web-demo", **index)
    on_manifest_pushed(good, Context(), store=store, load_config=lambda: CONFIG)
    assert store.builds == ["b-1"]
    forged = ManifestPushed(repository="evil.example/kiln/axion-web-demo", **index)
    with pytest.raises(PermanentError, match=r"manifest\.pushed refused"):
        on_manifest_pushed(forged, Context(), store=store, load_config=lambda: CONFIG)
