"""Is an image fully attested? SBOM present and readable, GPG simple signature accepted by a
containers policy, cosign signature valid, SLSA provenance signed and about this digest.

Used by `python -m services.attester verify` (the future `kiln verify`) and, later, the deployer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from services.attester import cosign, provenance
from services.attester.adapters.referrers import pull_referrer, referrers
from services.attester.ports import SimpleSigner
from services.attester.sbom import SBOM_ARTIFACT_TYPE, SbomError, parse
from shared.naming import split_repository
from shared.registry import RegistryClient, RegistryError
from shared.registry import manifests as mf


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    summary: str


@dataclass(frozen=True)
class VerifyReport:
    reference: str
    checks: list[Check] = field(default_factory=list)
    # An index's platform images, each verified in full.
    children: list[VerifyReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        own = bool(self.checks) and all(c.ok for c in self.checks)
        return own and all(child.ok for child in self.children)

    def lines(self, indent: str = "") -> list[str]:
        own = [f"{indent}{self.reference}"] + [
            f"{indent}  {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.summary}" for c in self.checks
        ]
        return own + [line for child in self.children for line in child.lines(indent + "  ")]


def verify_image(
    registry: RegistryClient,
    repository: str,
    digest: str,
    *,
    signer: SimpleSigner,
    gpg_public_key: Path,
    cosign_public_key: ec.EllipticCurvePublicKey,
) -> VerifyReport:
    _, repo = split_repository(repository)
    media_type, _, data = registry.get_manifest(repo, digest)
    is_index = media_type in mf.INDEXES
    checks = [
        # An index has no SBOM of its own: each of its images has one.
        *([] if is_index else [_sbom(registry, repo, digest)]),
        _gpg(signer, repository, digest, gpg_public_key),
        _cosign(registry, repo, digest, cosign_public_key),
        _provenance(registry, repo, digest, cosign_public_key),
    ]
    children = [
        verify_image(
            registry,
            repository,
            entry["digest"],
            signer=signer,
            gpg_public_key=gpg_public_key,
            cosign_public_key=cosign_public_key,
        )
        for entry in (json.loads(data).get("manifests") or [] if is_index else [])
    ]
    kind = "index" if is_index else "image"
    return VerifyReport(f"{repository}@{digest} ({kind})", checks, children)


def _sbom(registry: RegistryClient, repo: str, digest: str) -> Check:
    found = referrers(registry, repo, digest, SBOM_ARTIFACT_TYPE)
    if not found:
        return Check("sbom", False, "no CycloneDX SBOM refers to this digest")
    try:
        _, data = pull_referrer(registry, repo, found[-1], digest)
        summary = parse(data).summary
    except (SbomError, RegistryError, KeyError, IndexError) as exc:
        return Check("sbom", False, f"unreadable SBOM ({exc})")
    ecosystems = ", ".join(f"{k} {v}" for k, v in sorted(summary.by_ecosystem.items()))
    return Check(
        "sbom", True, f"CycloneDX {summary.spec_version}, {summary.packages} packages ({ecosystems})"
    )


def _gpg(signer: SimpleSigner, repository: str, digest: str, public_key: Path) -> Check:
    verdict = signer.verify(repository, digest, public_key=public_key)
    return Check("signature (gpg, containers policy)", verdict.accepted, verdict.reason)


def _cosign(registry: RegistryClient, repo: str, digest: str, public_key: ec.EllipticCurvePublicKey) -> Check:
    verdict = cosign.verify(registry, repo, digest, public_key)
    return Check("signature (cosign format)", verdict.valid, verdict.reason)


def _provenance(
    registry: RegistryClient, repo: str, digest: str, public_key: ec.EllipticCurvePublicKey
) -> Check:
    found = referrers(registry, repo, digest, provenance.PROVENANCE_ARTIFACT_TYPE)
    if not found:
        return Check("provenance", False, "no SLSA provenance refers to this digest")
    try:
        _, data = pull_referrer(registry, repo, found[-1], digest)
        statement = provenance.open_envelope(data, public_key, digest)
    except (provenance.ProvenanceError, RegistryError, KeyError, IndexError) as exc:
        return Check("provenance", False, str(exc))
    definition = statement["predicate"]["buildDefinition"]
    source = definition["externalParameters"].get("source", {})
    build = definition["internalParameters"]
    return Check(
        "provenance",
        True,
        f"SLSA v1, DSSE-signed; source {source.get('repository')} @ {source.get('commit')}, "
        f"build {build.get('buildNumber')} ({build.get('buildId')})",
    )
