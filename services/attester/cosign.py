"""The cosign signature format, written and checked without cosign.

What cosign (pkg/oci/static, pkg/cosign/verify.go, pkg/cosign/verifiers.go) reads, and what is
written here:
- tag `sha256-<hex>.sig` in the image's repository: an OCI image manifest, config
  `application/vnd.oci.image.config.v1+json`, one layer per signature;
- each layer: mediaType `application/vnd.dev.cosign.simplesigning.v1+json`, the blob is the
  simple-signing payload, annotation `dev.cosignproject.cosign/signature` = base64 of the ASN.1
  DER ECDSA P-256 signature over SHA-256 of the payload bytes;
- the payload: `{"critical":{"identity":{"docker-reference":REPO},"image":{"docker-manifest-digest":
  DIGEST},"type":"cosign container image signature"},"optional":null}` — the exact bytes that are
  signed, so verification reads the blob, never a re-serialisation.
The provenance's DSSE envelope also goes to `sha256-<hex>.att` in cosign's attestation form
(layer application/vnd.dsse.envelope.v1+json, annotation `predicateType`), next to the OCI 1.1
referrer the attester writes for it.
Verification (ours, for the deployer): signature valid for the key, payload type right, and its
`docker-manifest-digest` equal to the image digest (cosign's SimpleClaimVerifier).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from services.attester.adapters.referrers import fallback_tag
from shared.registry import NotFound, RegistryClient, RegistryError
from shared.registry import manifests as mf

SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGNATURE_TYPE = "cosign container image signature"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"


@dataclass(frozen=True)
class CosignVerdict:
    valid: bool
    reason: str
    signatures: int = 0


def signature_tag(digest: str) -> str:
    return f"{fallback_tag(digest)}.sig"


def attestation_tag(digest: str) -> str:
    return f"{fallback_tag(digest)}.att"


def payload(docker_reference: str, digest: str) -> bytes:
    """The simple-signing payload, byte for byte what cosign's Go json.Marshal writes."""
    document = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": SIGNATURE_TYPE,
        },
        "optional": None,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


def _config(layer_digests: list[str]) -> bytes:
    """The config go-containerregistry gives cosign's signature image (empty.Image plus layers;
    the layers are uncompressed, so each diff_id is the layer's digest)."""
    zero = "0001-01-01T00:00:00Z"
    return json.dumps(
        {
            "architecture": "",
            "created": zero,
            "history": [{"created": zero} for _ in layer_digests],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": list(layer_digests)},
            "config": {},
        },
        separators=(",", ":"),
    ).encode()


def push_signature(
    client: RegistryClient, repo: str, repository: str, digest: str, key: ec.EllipticCurvePrivateKey
) -> str:
    """Sign `repository@digest` and add the signature to its `.sig` manifest; returns that digest.

    Other signatures already there (another key, a co-signer) are kept, as cosign keeps them; ours
    replaces our earlier one of the same payload, so a redelivered event leaves one signature.
    ECDSA signatures differ on every run: "ours" is the one that verifies with our key.
    """
    data = payload(repository, digest)
    layers = [
        layer
        for layer in _existing_layers(client, repo, signature_tag(digest))
        if not _is_ours(layer, data, key.public_key())
    ]
    client.push_blob(repo, data)
    ours = {
        "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
        "digest": mf.sha256_digest(data),
        "size": len(data),
        "annotations": {SIGNATURE_ANNOTATION: sign(key, data)},
    }
    return _write(client, repo, signature_tag(digest), [*layers, ours])


def push_attestation(
    client: RegistryClient,
    repo: str,
    digest: str,
    envelope: bytes,
    predicate_type: str,
    is_ours: Callable[[bytes], bool],
) -> str:
    """Add a DSSE envelope to the image's `.att` manifest, the form `cosign verify-attestation`
    and Kyverno's `attestations` read: layer mediaType application/vnd.dsse.envelope.v1+json,
    annotations `predicateType` and an empty `dev.cosignproject.cosign/signature` (the signature
    is inside the envelope). Our earlier envelope of that predicate type (`is_ours`) is replaced."""
    kept = []
    for layer in _existing_layers(client, repo, attestation_tag(digest)):
        same_kind = (layer.get("annotations") or {}).get("predicateType") == predicate_type
        if not (same_kind and is_ours(client.get_blob(repo, layer["digest"]))):
            kept.append(layer)
    client.push_blob(repo, envelope)
    ours = {
        "mediaType": DSSE_MEDIA_TYPE,
        "digest": mf.sha256_digest(envelope),
        "size": len(envelope),
        "annotations": {SIGNATURE_ANNOTATION: "", "predicateType": predicate_type},
    }
    return _write(client, repo, attestation_tag(digest), [*kept, ours])


def _write(client: RegistryClient, repo: str, tag: str, layers: list[dict[str, Any]]) -> str:
    config = _config([layer["digest"] for layer in layers])
    client.push_blob(repo, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mf.OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": mf.sha256_digest(config), "size": len(config)},
        "layers": layers,
    }
    body = json.dumps(manifest, separators=(",", ":")).encode()
    return client.put_manifest(repo, tag, body, mf.OCI_MANIFEST)


def _is_ours(layer: dict[str, Any], data: bytes, public_key: ec.EllipticCurvePublicKey) -> bool:
    encoded = (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION, "")
    if layer.get("digest") != mf.sha256_digest(data) or not encoded:
        return False
    try:
        public_key.verify(base64.b64decode(encoded), data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def _existing_layers(client: RegistryClient, repo: str, tag: str) -> list[dict[str, Any]]:
    try:
        _, _, data = client.get_manifest(repo, tag)
    except NotFound:
        return []
    return list(json.loads(data).get("layers") or [])


def verify(
    client: RegistryClient, repo: str, digest: str, public_key: ec.EllipticCurvePublicKey
) -> CosignVerdict:
    """Is there a cosign signature of `digest` by `public_key`? What cosign verify --key checks,
    minus the transparency log (Kiln's signatures are not in Rekor)."""
    try:
        _, _, data = client.get_manifest(repo, signature_tag(digest))
    except NotFound:
        return CosignVerdict(False, f"no cosign signature: {repo}:{signature_tag(digest)} does not exist")
    except RegistryError as exc:
        return CosignVerdict(False, f"cannot read the cosign signature: {exc}")
    layers = [
        layer
        for layer in json.loads(data).get("layers") or []
        if layer.get("mediaType") == SIMPLE_SIGNING_MEDIA_TYPE
    ]
    problems: list[str] = []
    for layer in layers:
        problem = _check_layer(client, repo, digest, public_key, layer)
        if problem is None:
            return CosignVerdict(True, "cosign signature valid for the key", len(layers))
        problems.append(problem)
    detail = "; ".join(problems) if problems else "the .sig manifest has no simple-signing layer"
    return CosignVerdict(False, f"no valid cosign signature by this key ({detail})", len(layers))


def _check_layer(
    client: RegistryClient, repo: str, digest: str, public_key: ec.EllipticCurvePublicKey, layer: dict
) -> str | None:
    encoded = (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION)
    if not encoded:
        return "a layer without signature annotation"
    try:
        data = client.get_blob(repo, layer["digest"])  # checked against its digest on read
        public_key.verify(base64.b64decode(encoded, validate=True), data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "signature does not verify with this key"
    except (ValueError, RegistryError) as exc:
        return f"unreadable signature ({exc})"
    try:
        critical = json.loads(data)["critical"]
        kind, signed = critical["type"], critical["image"]["docker-manifest-digest"]
    except (ValueError, KeyError, TypeError):
        return "payload is not a simple-signing document"
    if kind != SIGNATURE_TYPE:
        return f"payload type is {kind!r}"
    if signed != digest:
        return f"signature is for {signed}, not {digest}"
    return None
