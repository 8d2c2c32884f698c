"""SLSA v1 provenance of one image: an in-toto Statement v1 in a DSSE envelope, signed with the
operator's ECDSA key through securesystemslib's signer API, attached as a referrer of the image.

The statement (https://slsa.dev/spec/v1.0/provenance):
- subject: the image (repository, sha256 digest);
- buildDefinition: buildType (a Kiln URI), externalParameters (what a user asked for: source
  repository, ref, commit), internalParameters (what Kiln chose: build id/number, config digest,
  target, platforms), resolvedDependencies (source commit, compiler and base image digests, one
  entry per tier's requirements hash);
- runDetails: builder.id, metadata (invocationId = build id, startedOn, finishedOn).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, SSlibKey

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://kiln.dev/buildtypes/cython-image/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
# How the envelope is stored next to the image (artifactType of the referrer, layer mediaType).
PROVENANCE_ARTIFACT_TYPE = "application/vnd.in-toto+json"
DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
PREDICATE_ANNOTATION = "in-toto.io/predicate-type"


class ProvenanceError(RuntimeError):
    """Missing, unsigned, badly signed or about another image."""


@dataclass(frozen=True)
class BuildFacts:
    """What the build knows about itself; the handler gets these from a port (the read model)."""

    build_id: str
    build_number: int
    package: str
    source_repository: str
    ref: str
    commit: str
    config_digest: str
    started_on: dt.datetime
    finished_on: dt.datetime
    compiler_image: str | None = None  # "repo@sha256:…" of the compiler that built the tree
    base_image: str | None = None  # "repo@sha256:…"
    tier_requirements: dict[str, str] = field(default_factory=dict)  # tier -> sha256 hex


def _digest_set(reference: str) -> dict[str, str]:
    algorithm, _, hex_ = reference.rpartition("@")[2].partition(":")
    return {algorithm: hex_}


def _time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def statement(
    repository: str,
    digest: str,
    facts: BuildFacts,
    *,
    builder_id: str,
    target: str,
    platforms: tuple[str, ...],
) -> dict[str, Any]:
    """The statement about one image (one platform) or one index (its platforms)."""
    dependencies: list[dict[str, Any]] = [
        {"uri": f"git+{facts.source_repository}@{facts.ref}", "digest": {"gitCommit": facts.commit}}
    ]
    for name, ref in (("compiler", facts.compiler_image), ("base-image", facts.base_image)):
        if ref:
            dependencies.append(
                {"name": name, "uri": f"oci://{ref.split('@')[0]}", "digest": _digest_set(ref)}
            )
    for tier, sha in sorted(facts.tier_requirements.items()):
        dependencies.append({"name": f"requirements/{tier}", "digest": {"sha256": sha}})
    source = {"repository": facts.source_repository, "ref": facts.ref, "commit": facts.commit}
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": repository, "digest": _digest_set(digest)}],
        "predicateType": SLSA_PROVENANCE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"source": source},
                "internalParameters": {
                    "buildId": facts.build_id,
                    "buildNumber": facts.build_number,
                    "package": facts.package,
                    "target": target,
                    "platforms": list(platforms),
                    "configDigest": facts.config_digest,
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": builder_id},
                "metadata": {
                    "invocationId": facts.build_id,
                    "startedOn": _time(facts.started_on),
                    "finishedOn": _time(facts.finished_on),
                },
            },
        },
    }


def public_key_of(key: ec.EllipticCurvePublicKey) -> SSlibKey:
    """The securesystemslib key (keyid = its standard hash) for a P-256 public key."""
    return SSlibKey.from_crypto(key, scheme="ecdsa-sha2-nistp256")


def sign(document: dict[str, Any], key: ec.EllipticCurvePrivateKey) -> bytes:
    """The DSSE envelope (JSON bytes) of `document`, signed over DSSE's PAE by securesystemslib."""
    envelope = Envelope(
        payload=json.dumps(document, sort_keys=True, separators=(",", ":")).encode(),
        payload_type=PAYLOAD_TYPE,
        signatures={},
    )
    envelope.sign(CryptoSigner(key, public_key_of(key.public_key())))
    return json.dumps(envelope.to_dict(), sort_keys=True).encode()


def open_envelope(data: bytes, public_key: ec.EllipticCurvePublicKey, digest: str) -> dict[str, Any]:
    """The statement inside a DSSE envelope signed by `public_key` whose subject is `digest`."""
    try:
        envelope = Envelope.from_dict(json.loads(data))
    except (ValueError, KeyError, TypeError) as exc:
        raise ProvenanceError(f"not a DSSE envelope ({exc})") from None
    if envelope.payload_type != PAYLOAD_TYPE:
        raise ProvenanceError(f"payloadType is {envelope.payload_type!r}, not {PAYLOAD_TYPE}")
    try:
        envelope.verify([public_key_of(public_key)], 1)
    except Exception as exc:  # securesystemslib raises VerificationError and friends
        raise ProvenanceError(
            f"DSSE signature does not verify with this key ({type(exc).__name__})"
        ) from None
    try:
        document = json.loads(envelope.payload)
    except ValueError:
        raise ProvenanceError("the signed payload is not JSON") from None
    if document.get("_type") != STATEMENT_TYPE or document.get("predicateType") != SLSA_PROVENANCE:
        raise ProvenanceError("the payload is not an in-toto Statement v1 of SLSA provenance v1")
    subjects = [s.get("digest", {}).get("sha256") for s in document.get("subject") or []]
    if digest.removeprefix("sha256:") not in subjects:
        raise ProvenanceError(f"the provenance is about {subjects}, not {digest}")
    return document


def payload_of(data: bytes) -> dict[str, Any]:
    """The statement of an envelope without checking it (for display only)."""
    return json.loads(base64.b64decode(json.loads(data)["payload"]))


def signed_by(data: bytes, public_key: ec.EllipticCurvePublicKey) -> bool:
    """Does this envelope carry a valid signature by `public_key` (whatever its subject)?"""
    try:
        Envelope.from_dict(json.loads(data)).verify([public_key_of(public_key)], 1)
    except Exception:  # unreadable or unsigned: not ours
        return False
    return True
