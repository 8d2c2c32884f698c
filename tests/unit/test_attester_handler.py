"""The attester's handler without the bus or the registry: failures end the stage as failed with
the reason, and nothing about the keys shows in the events or the key holder's repr."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from services.attester.handlers import SigningKeys, on_image_pushed
from services.attester.sbom import SbomError, SbomSummary, summarise
from shared.events import ImagePushed, StageFinished, StageStarted

EVENT = ImagePushed(
    target="web",
    platform="linux/arm64",
    repository="127.0.0.1:5000/kiln/demo-web",
    tag="b7",
    digest="sha256:" + "b" * 64,
    size_bytes=1,
)


@dataclass
class FakeContext:
    build_id: str = "build-1"
    emitted: list = field(default_factory=list)

    def emit(self, event):
        self.emitted.append(event)


@dataclass
class FakeRegistry:
    host: str = "127.0.0.1:5000"


@dataclass
class FailingSbom:
    calls: list = field(default_factory=list)

    def sbom(self, reference):
        self.calls.append(reference)
        raise SbomError("trivy exit status 1: boom")


def keys() -> SigningKeys:
    return SigningKeys(Path("/nowhere"), "F" * 40, ec.generate_private_key(ec.SECP256R1()))


def run(registry=None, sbom=None):
    ctx = FakeContext()
    result = on_image_pushed(
        EVENT,
        ctx,
        registry=registry or FakeRegistry(),
        sbom_generator=sbom or FailingSbom(),
        signer=None,
        keys=keys(),
        build_facts=lambda build_id, subject: None,
        builder_id="https://kiln.example.com",
    )
    return result, ctx


def test_sbom_failure_is_a_failed_attest_stage():
    sbom = FailingSbom()
    result, ctx = run(sbom=sbom)
    assert result is None
    assert sbom.calls == [f"{EVENT.repository}@{EVENT.digest}"]
    started, finished = ctx.emitted
    assert isinstance(started, StageStarted) and started.stage == "attest"
    assert isinstance(finished, StageFinished)
    assert (finished.stage, finished.status, finished.target, finished.platform) == (
        "attest",
        "failed",
        "web",
        "linux/arm64",
    )
    assert finished.error == "attest failed: trivy exit status 1: boom"


def test_image_outside_the_attesters_registry_is_refused_before_anything_runs():
    sbom = FailingSbom()
    result, ctx = run(registry=FakeRegistry(host="registry.example.com"), sbom=sbom)
    assert result is None and sbom.calls == []
    assert "not under the attester's registry registry.example.com" in ctx.emitted[-1].error


def test_signing_keys_repr_shows_no_key_material():
    held = keys()
    assert repr(held) == f"SigningKeys(gpg={'F' * 40}, cosign=<ECDSA P-256>)"


def test_sbom_summary_counts_packages_by_ecosystem():
    summary = summarise(
        {
            "bomFormat": "CycloneDX",
            "specVersion": "1.6",
            "components": [
                {"type": "operating-system", "name": "debian"},
                {"type": "library", "name": "bash", "purl": "pkg:deb/debian/bash@5.2"},
                {"type": "library", "name": "httpx", "purl": "pkg:pypi/httpx@0.27.0"},
                {"type": "library", "name": "anyio", "purl": "pkg:pypi/anyio@4.0"},
            ],
        }
    )
    assert summary == SbomSummary("1.6", 4, {"operating-system": 1, "library": 3}, {"deb": 1, "pypi": 2})
    assert summary.as_detail() == {
        "format": "CycloneDX 1.6",
        "components": 4,
        "packages": 3,
        "by_ecosystem": {"deb": 1, "pypi": 2},
    }
