"""On `image.pushed`: SBOM, GPG simple signature, cosign signature and SLSA provenance of the
pushed digest, all stored next to the image; the summary goes into the stage's `detail`.

The stage lifecycle (StageStarted/StageFinished) is emitted here by hand until the shared
`stage()` lifecycle (#15) takes it over. Every failure (trivy, skopeo, keys, registry) ends as
StageFinished(status="failed") with the reason; the reason names files and digests, never key
bytes (keys are objects here; nothing formats them).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from services.attester import cosign, provenance
from services.attester.adapters.skopeo import SigningError
from services.attester.attach import attach_provenance, attach_sbom
from services.attester.keys import KeyProblem
from services.attester.ports import BuildFactsFn, SbomGenerator, SimpleSigner
from services.attester.sbom import SbomError, SbomSummary
from shared.events import ImagePushed, StageFinished, StageStarted
from shared.naming import digest_ref, split_repository
from shared.registry import RegistryClient, RegistryError

log = logging.getLogger("kiln.attester")

STAGE = "attest"


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
class AttestResult:
    sbom: SbomSummary
    sbom_digest: str
    gpg_signature: str  # the lookaside file skopeo wrote
    cosign_signature: str  # digest of the .sig manifest
    provenance_digest: str
    cosign_attestation: str  # digest of the .att manifest (the same envelope, cosign's form)

    def as_detail(self) -> dict[str, Any]:
        return {
            "sbom": {**self.sbom.as_detail(), "digest": self.sbom_digest},
            "signatures": {"gpg": "simple-signing (lookaside)", "cosign": self.cosign_signature},
            "provenance": self.provenance_digest,
            "attestation": self.cosign_attestation,
        }


def attest(
    event: ImagePushed,
    build_id: str,
    *,
    registry: RegistryClient,
    sbom_generator: SbomGenerator,
    signer: SimpleSigner,
    keys: SigningKeys,
    build_facts: BuildFactsFn,
    builder_id: str,
) -> AttestResult:
    """The four attestations of one image; raises on the first that cannot be made."""
    host, repo = split_repository(event.repository)
    if host != registry.host.lower():
        raise ValueError(
            f"repository {event.repository[:200]!r} is not under the attester's registry {registry.host} "
            "(KILN_REGISTRY_URL, the only one it holds credentials for)"
        )
    reference = digest_ref(event.repository, event.digest)
    sbom = sbom_generator.sbom(reference)
    sbom_digest = attach_sbom(registry, repo, event.digest, sbom)
    gpg = signer.sign(
        event.repository,
        event.digest,
        gpg_home=keys.gpg_home,
        fingerprint=keys.gpg_fingerprint,
        passphrase=keys.gpg_passphrase,
    )
    sig = cosign.push_signature(registry, repo, event.repository, event.digest, keys.cosign_key)
    statement = provenance.statement(
        event.repository,
        event.digest,
        build_facts(build_id, event),
        builder_id=builder_id,
        target=event.target,
        platform=event.platform,
    )
    envelope = provenance.sign(statement, keys.cosign_key)
    prov = attach_provenance(registry, repo, event.digest, envelope)
    public = keys.cosign_key.public_key()
    att = cosign.push_attestation(
        registry,
        repo,
        event.digest,
        envelope,
        provenance.SLSA_PROVENANCE,
        is_ours=lambda data: provenance.signed_by(data, public),
    )
    return AttestResult(sbom.summary, sbom_digest, gpg.location, sig, prov, att)


def on_image_pushed(
    event: ImagePushed,
    ctx: Context,
    *,
    registry: RegistryClient,
    sbom_generator: SbomGenerator,
    signer: SimpleSigner,
    keys: SigningKeys,
    build_facts: BuildFactsFn,
    builder_id: str,
) -> AttestResult | None:
    started = time.monotonic()
    where = {"platform": event.platform, "target": event.target}
    ctx.emit(StageStarted(stage=STAGE, **where))
    try:
        result = attest(
            event,
            ctx.build_id,
            registry=registry,
            sbom_generator=sbom_generator,
            signer=signer,
            keys=keys,
            build_facts=build_facts,
            builder_id=builder_id,
        )
    except (
        SbomError,
        SigningError,
        KeyProblem,
        RegistryError,
        provenance.ProvenanceError,
        ValueError,
    ) as exc:
        reason = f"attest failed: {exc}"
        log.error("%s %s: %s", event.target, event.platform, reason)
        ctx.emit(StageFinished(stage=STAGE, status="failed", duration_ms=_ms(started), error=reason, **where))
        return None
    log.info(
        "%s %s attested: %d packages, cosign %s, provenance %s",
        event.target,
        event.platform,
        result.sbom.packages,
        result.cosign_signature,
        result.provenance_digest,
    )
    detail = result.as_detail()
    ctx.emit(StageFinished(stage=STAGE, status="succeeded", duration_ms=_ms(started), detail=detail, **where))
    return result


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
