"""services/imager/receipt.py: a well-formed job is accepted only against the operator's config."""

from __future__ import annotations

import pytest

from services.imager.receipt import JobRefused, ReceiptPolicy, artifact_location, check_job, check_pushed
from shared.bus import PermanentError
from shared.config import ConfigError, parse_config
from shared.events import ImagePushed, ImageRequested
from shared.events.compile import Artifact

DIGEST = "sha256:" + "a" * 64
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
      registry: {host: "reg:5000", project: kiln}
      base_images: {linux/arm64: "reg:5000/kiln/base:arm64"}
""",
    env={},
)
POLICY = ReceiptPolicy(
    load_config=lambda: CONFIG,
    registry_host="reg:5000",
    artifact_store="reg:5000/kiln",
    default_base_images={"linux/amd64": "reg:5000/kiln/base:amd64", "linux/arm64": None},
)


def job(**overrides) -> ImageRequested:
    platform = overrides.get("platform", "linux/amd64")
    values = dict(
        target="web",
        platform=platform,
        artifact=Artifact(platform=platform, reference=f"reg:5000/kiln/kiln-artifacts/demo@{DIGEST}"),
        base_image="reg:5000/kiln/base:amd64",
        tier="minimal",
        command=("python3", "-m", "core.web"),
        repository="reg:5000/kiln/axion-web-demo",
    )
    return ImageRequested(**{**values, **overrides})


def refusal(event, policy=POLICY, package="demo") -> str:
    with pytest.raises(JobRefused) as refused:
        check_job(event, package, policy)
    assert isinstance(refused.value, PermanentError)  # dead-lettered, never retried
    return str(refused.value)


def test_the_derived_job_is_accepted_on_either_platform():
    check_job(job(), "demo", POLICY)
    arm = job(
        platform="linux/arm64",
        base_image="reg:5000/kiln/base:arm64",
        repository="reg:5000/kiln/v-web-demo-arm",
    )
    check_job(arm, "demo", POLICY)


def test_a_repository_that_is_not_the_derived_one_is_refused_naming_the_expected_one():
    message = refusal(job(repository="evil.example:5000/kiln/axion-web-demo"))
    assert "repository refused" in message and "reg:5000/kiln/<version>-web-demo" in message
    assert "reg:5000/kiln/<version>-web-demo-arm" in refusal(
        job(platform="linux/arm64", base_image="reg:5000/kiln/base:arm64")
    )


def test_a_registry_the_credentials_are_not_for_is_refused():
    other = ReceiptPolicy(POLICY.load_config, "other:5000", "other:5000/kiln", POLICY.default_base_images)
    message = refusal(job(), other)
    assert "packages.demo.deployment.registry.host" in message and "KILN_REGISTRY_URL" in message


def test_base_images_come_from_the_operator_only():
    message = refusal(job(base_image="evil.example/python:3.11"))
    assert "base_image 'evil.example/python:3.11'" in message
    assert "KILN_BASE_IMAGE_AMD64: reg:5000/kiln/base:amd64" in message
    assert "is empty" in refusal(job(base_image=""))
    check_job(job(base_image="", tier=None, dockerfile="Dockerfile"), "demo", POLICY)  # plain mode


def test_artifacts_only_from_the_configured_store_and_for_the_jobs_platform():
    foreign = Artifact(platform="linux/amd64", reference=f"evil.example/kiln/kiln-artifacts/demo@{DIGEST}")
    assert "expected reg:5000/kiln/kiln-artifacts/demo@sha256:<hex>" in refusal(job(artifact=foreign))
    other_package = Artifact(platform="linux/amd64", reference=f"reg:5000/kiln/kiln-artifacts/other@{DIGEST}")
    assert "KILN_ARTIFACT_STORE" in refusal(job(artifact=other_package))
    arm = Artifact(platform="linux/arm64", reference=f"reg:5000/kiln/kiln-artifacts/demo@{DIGEST}")
    assert "artifact.platform linux/arm64" in refusal(job(artifact=arm))
    assert artifact_location("file:///srv/kiln-artifacts/", "demo") == "file:///srv/kiln-artifacts/demo"


def test_unknown_targets_and_packages_and_a_missing_config_are_refused():
    assert "target 'api' is not a service of package 'demo'" in refusal(
        job(target="api", repository="reg:5000/kiln/axion-api-demo")
    )
    assert "package 'other' is not in the operator config" in refusal(job(), package="other")
    unset = ReceiptPolicy(None, "reg:5000", "reg:5000/kiln", {})
    assert "KILN_CONFIG_PATH is not set" in refusal(job(), unset)

    def broken():
        raise ConfigError([("packages", "boom")])

    assert "operator config (KILN_CONFIG_PATH) is invalid" in refusal(
        job(), ReceiptPolicy(broken, "reg:5000", "", {})
    )


def test_several_problems_are_reported_at_once():
    message = refusal(job(repository="evil.example/x/y", base_image="evil.example/base:1"))
    assert "repository refused" in message and "base_image" in message


def test_pushed_images_used_for_indexes_are_checked_too():
    pushed = dict(target="web", platform="linux/amd64", tag="b1", digest=DIGEST, size_bytes=1)
    check_pushed(ImagePushed(repository="reg:5000/kiln/axion-web-demo", **pushed), "demo", POLICY)
    with pytest.raises(JobRefused, match="repository refused"):
        check_pushed(ImagePushed(repository="reg:5000/elsewhere/web", **pushed), "demo", POLICY)
