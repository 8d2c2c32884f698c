"""On `image.pushed`: SBOM, GPG simple signature, cosign signature and SLSA provenance of the
pushed digest, all stored next to the image; the summary goes into the stage's `detail`.
On `manifest.pushed` (the multi-arch index): the two signatures and the provenance of the index.

The lifecycle is the shared one (`shared.bus.stage`). Every failure making an attestation
(trivy, skopeo, keys, registry) ends the stage `failed` with its reason; the reason names files
and digests, never key bytes (keys are objects here; nothing formats them). A fact of the build
not stored yet (facts.py) is a TransientError: no verdict, the bus retries the message.

The detail carries what the deploy gate, the email and the CDEvents feed read: a one-line
`summary`, the image (`repository`, `digest`, `tag`) and the cosign `signature` digest
(artifact.signed), the SBOM's package counts, the provenance's digest.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from services.attester import cosign, provenance
from services.attester.attach import attach_provenance, attach_sbom
from services.attester.keys import KeyProblem
from services.attester.ports import BuildFactsFn, SbomGenerator, SimpleSigner, Subject
from services.attester.sbom import SbomError, SbomSummary
from shared.bus.stage import stage
from shared.events import ImagePushed, ManifestPushed
from shared.naming import digest_ref, split_repository
from shared.platforms import PLATFORM_NAMES
from shared.registry import RegistryClient, RegistryError
from shared.skopeo import SigningError

log = logging.getLogger("kiln.attester")

STAGE = "attest"
# What can go wrong making an attestation: each ends the stage as failed with its reason.
ATTEST_ERRORS = (SbomError, SigningError, KeyProblem, RegistryError, provenance.ProvenanceError, ValueError)


class Context(Protocol):
    @property
    def build_id(self) -> str: ...

    def emit(self, event: Any) -> None: ...


@dataclass(frozen=True)
class SigningKeys:
    gpg_home: Path
    gpg_fingerprint: str
    cosign_key: ec.EllipticCurvePrivateKey
    gpg_passphrase: str | None = None

    def __repr__(self) -> str:  # a key object in a traceback or log shows nothing of the key
        return f"SigningKeys(gpg={self.gpg_fingerprint}, cosign=<ECDSA P-256>)"


@dataclass(frozen=True)
class Signed:
    """What every attested manifest (image or index) gets: two signatures and the provenance."""

    gpg_signature: str  # the lookaside file skopeo wrote
    cosign_signature: str  # digest of the .sig manifest
    provenance_digest: str  # the OCI referrer
    cosign_attestation: str  # digest of the .att manifest (the same envelope, cosign's form)

    def as_detail(self) -> dict[str, Any]:
        return {
            "signatures": {"gpg": "simple-signing (lookaside)", "cosign": self.cosign_signature},
            "provenance": self.provenance_digest,
            "attestation": self.cosign_attestation,
        }


@dataclass(frozen=True)
class AttestResult:
    signed: Signed
    sbom: SbomSummary | None = None  # None for an index: each platform image has its own
    sbom_digest: str | None = None

    def as_detail(self) -> dict[str, Any]:
        sbom = {"sbom": {**self.sbom.as_detail(), "digest": self.sbom_digest}} if self.sbom else {}
        return {**sbom, **self.signed.as_detail()}


def _repo_under(registry: RegistryClient, repository: str) -> str:
    host, repo = split_repository(repository)
    if host != registry.host.lower():
        raise ValueError(
            f"repository {repository[:200]!r} is not under the attester's registry {registry.host} "
            "(KILN_REGISTRY_URL, the only one it holds credentials for)"
        )
    return repo


def sign_and_prove(
    repository: str,
    digest: str,
    statement: dict[str, Any],
    *,
    registry: RegistryClient,
    signer: SimpleSigner,
    keys: SigningKeys,
) -> Signed:
    """GPG and cosign signatures of `repository@digest`, and its signed provenance, stored."""
    repo = _repo_under(registry, repository)
    gpg = signer.sign(
        repository,
        digest,
        gpg_home=keys.gpg_home,
        fingerprint=keys.gpg_fingerprint,
        passphrase=keys.gpg_passphrase,
    )
    sig = cosign.push_signature(registry, repo, repository, digest, keys.cosign_key)
    envelope = provenance.sign(statement, keys.cosign_key)
    prov = attach_provenance(registry, repo, digest, envelope)
    public = keys.cosign_key.public_key()
    att = cosign.push_attestation(
        registry,
        repo,
        digest,
        envelope,
        provenance.SLSA_PROVENANCE,
        is_ours=lambda data: provenance.signed_by(data, public),
    )
    return Signed(gpg.location, sig, prov, att)


def attest(
    subject: Subject,
    build_id: str,
    *,
    registry: RegistryClient,
    sbom_generator: SbomGenerator,
    signer: SimpleSigner,
    keys: SigningKeys,
    build_facts: BuildFactsFn,
    builder_id: str,
) -> AttestResult:
    """SBOM, signatures and provenance of one image; raises on the first that cannot be made."""
    repo = _repo_under(registry, subject.repository)
    sbom = sbom_generator.sbom(digest_ref(subject.repository, subject.digest))
    sbom_digest = attach_sbom(registry, repo, subject.digest, sbom)
    statement = provenance.statement(
        subject.repository,
        subject.digest,
        build_facts(build_id, subject),
        builder_id=builder_id,
        target=subject.target,
        platforms=(subject.platform,),
    )
    signed = sign_and_prove(
        subject.repository, subject.digest, statement, registry=registry, signer=signer, keys=keys
    )
    return AttestResult(signed, sbom.summary, sbom_digest)


def attest_index(
    event: ManifestPushed,
    build_id: str,
    *,
    registry: RegistryClient,
    sbom_generator: SbomGenerator,
    signer: SimpleSigner,
    keys: SigningKeys,
    build_facts: BuildFactsFn,
    builder_id: str,
) -> AttestResult:
    """Signatures and provenance of a multi-arch index (what `repo:tag` resolves to), and of each
    platform image in the index's own repository: signatures are per repository (a containers
    policy's `matchRepository`, cosign's `.sig` tag), and the arm64 image was pushed and attested
    under its `-arm` repository before the index copied it here."""
    repo = _repo_under(registry, event.repository)
    _, _, data = registry.get_manifest(repo, event.digest)
    for entry in json.loads(data).get("manifests") or []:
        platform = entry.get("platform") or {}
        name = f"{platform.get('os')}/{platform.get('architecture')}"
        if name not in PLATFORM_NAMES:
            continue  # not an image Kiln builds (an attestation manifest, another platform)
        attest(
            Subject(event.repository, entry["digest"], event.target, name),
            build_id,
            registry=registry,
            sbom_generator=sbom_generator,
            signer=signer,
            keys=keys,
            build_facts=build_facts,
            builder_id=builder_id,
        )
    statement = provenance.statement(
        event.repository,
        event.digest,
        build_facts(build_id, Subject.of(event)),
        builder_id=builder_id,
        target=event.target,
        platforms=event.platforms,
    )
    signed = sign_and_prove(
        event.repository, event.digest, statement, registry=registry, signer=signer, keys=keys
    )
    return AttestResult(signed)


def on_image_pushed(event: ImagePushed, ctx: Context, **ports: Any) -> AttestResult | None:
    """`ports`: what `attest` takes besides the event (bootstrap binds them)."""
    return _stage(ctx, event, event.platform, lambda: attest(Subject.of(event), ctx.build_id, **ports))


def on_manifest_pushed(event: ManifestPushed, ctx: Context, **ports: Any) -> AttestResult | None:
    """The index: its stage row has no platform, and is not a gate fact."""
    return _stage(ctx, event, None, lambda: attest_index(event, ctx.build_id, **ports))


def _stage(
    ctx: Context,
    event: ImagePushed | ManifestPushed,
    platform: str | None,
    work: Callable[[], AttestResult],
) -> AttestResult | None:
    where = {
        "platform": platform,
        "target": event.target,
        "repository": event.repository,
        "digest": event.digest,
        "tag": event.tag,
    }
    with stage(ctx, STAGE, target=where["target"], platform=where["platform"]) as run:
        try:
            result = work()
        except ATTEST_ERRORS as exc:
            reason = f"attest failed: {exc}"
            log.error("%s %s: %s", where["target"], where["platform"] or "index", reason)
            run.fail(reason)
            return None
        packages = f"{result.sbom.packages} packages, " if result.sbom else ""
        summary = f"{packages}signed (gpg, cosign), provenance {result.signed.provenance_digest[:19]}"
        log.info("%s %s attested: %s", where["target"], where["platform"] or "index", summary)
        run.detail.update(result.as_detail())
        run.detail.update(
            summary=summary,
            repository=where["repository"],
            digest=where["digest"],
            tag=where["tag"],
            signature=result.signed.cosign_signature,
        )
    return result
