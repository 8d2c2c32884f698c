"""The cosign-format signature on the real registry: shape as cosign writes it (checked against
cosign's own code, see docs/attest.md), verified by our verifier with the right key only."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from services.attester import cosign, keys

pytestmark = pytest.mark.integration

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

# cosign's README (`cosign verify` output of `cosign sign --key`), the payload it signs.
COSIGN_README_PAYLOAD = (
    '{"critical":{"identity":{"docker-reference":"localhost:5000/tcpconnect"},"image":'
    '{"docker-manifest-digest":"sha256:7a91c50d922925f152fec96ed1d84b7bc6b2079c169d68826f6cf307f22d40e6"},'
    '"type":"cosign container image signature"},"optional":null}'
)


def test_payload_is_byte_for_byte_what_cosign_signs():
    digest = "sha256:7a91c50d922925f152fec96ed1d84b7bc6b2079c169d68826f6cf307f22d40e6"
    assert cosign.payload("localhost:5000/tcpconnect", digest).decode() == COSIGN_README_PAYLOAD


def test_signature_manifest_has_cosigns_shape_and_verifies(registry, make_image, operator_keys):
    image = make_image("cosign")
    key = keys.load_private_key(operator_keys.cosign_key)
    digest = cosign.push_signature(registry, image.repo, image.repository, image.digest, key)

    media_type, checked, data = registry.get_manifest(image.repo, f"sha256-{image.digest[7:]}.sig")
    assert checked == digest and media_type == "application/vnd.oci.image.manifest.v1+json"
    manifest = json.loads(data)
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    payload = registry.get_blob(image.repo, layer["digest"])
    assert json.loads(payload)["critical"]["image"]["docker-manifest-digest"] == image.digest
    assert json.loads(payload)["critical"]["identity"]["docker-reference"] == image.repository
    # The signature is ECDSA P-256 / SHA-256 over the payload bytes, checked here with the
    # public key file an operator gives to cosign/Kyverno, through cryptography directly.
    public = keys.load_public_key(operator_keys.cosign_public_key)
    signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    public.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    config = json.loads(registry.get_blob(image.repo, manifest["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [layer["digest"]]

    verdict = cosign.verify(registry, image.repo, image.digest, public)
    assert verdict.valid, verdict.reason
    # Idempotent: signing again leaves one signature.
    cosign.push_signature(registry, image.repo, image.repository, image.digest, key)
    assert cosign.verify(registry, image.repo, image.digest, public).signatures == 1


def test_unsigned_other_key_and_other_digest_are_refused(registry, make_image, operator_keys, other_keys):
    public = keys.load_public_key(operator_keys.cosign_public_key)
    unsigned = make_image("cosign-unsigned")
    verdict = cosign.verify(registry, unsigned.repo, unsigned.digest, public)
    assert not verdict.valid and "no cosign signature" in verdict.reason

    other = make_image("cosign-other")
    cosign.push_signature(
        registry, other.repo, other.repository, other.digest, keys.load_private_key(other_keys.cosign_key)
    )
    verdict = cosign.verify(registry, other.repo, other.digest, public)
    assert not verdict.valid and "does not verify with this key" in verdict.reason
    # Our key's signature added next to theirs: both kept, ours accepted.
    cosign.push_signature(
        registry, other.repo, other.repository, other.digest, keys.load_private_key(operator_keys.cosign_key)
    )
    verdict = cosign.verify(registry, other.repo, other.digest, public)
    assert verdict.valid and verdict.signatures == 2


def test_signature_copied_to_another_digest_is_refused(registry, make_image, operator_keys):
    image = make_image("cosign-moved")
    key = keys.load_private_key(operator_keys.cosign_key)
    cosign.push_signature(registry, image.repo, image.repository, image.digest, key)
    # Someone copies the .sig manifest to the tag of another digest: the payload names the first.
    _, _, data = registry.get_manifest(image.repo, cosign.signature_tag(image.digest))
    forged = "sha256:" + "1" * 64
    registry.put_manifest(
        image.repo, cosign.signature_tag(forged), data, "application/vnd.oci.image.manifest.v1+json"
    )
    verdict = cosign.verify(
        registry, image.repo, forged, keys.load_public_key(operator_keys.cosign_public_key)
    )
    assert not verdict.valid and f"signature is for {image.digest}" in verdict.reason
