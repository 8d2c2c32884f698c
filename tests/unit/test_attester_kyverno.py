"""The Kyverno policy the attester generates names the operator's cosign key for both the signature
and the SLSA provenance attestation, for the registry project's images, and refuses a non-key."""

from __future__ import annotations

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from services.attester import kyverno
from services.attester.keys import public_pem


def test_the_policy_requires_our_key_for_signature_and_provenance():
    pem = public_pem(ec.generate_private_key(ec.SECP256R1()).public_key()).decode()
    policy = yaml.safe_load(kyverno.render(pem, "registry.example.com/kiln/*"))
    assert (policy["apiVersion"], policy["kind"]) == ("kyverno.io/v1", "ClusterPolicy")
    (rule,) = policy["spec"]["rules"]
    (check,) = rule["verifyImages"]
    assert check["imageReferences"] == ["registry.example.com/kiln/*"]
    assert check["required"] and check["verifyDigest"]
    assert check["attestors"][0]["entries"][0]["keys"]["publicKeys"] == pem.strip()
    (attestation,) = check["attestations"]
    assert attestation["type"] == "https://slsa.dev/provenance/v1"
    assert attestation["attestors"][0]["entries"][0]["keys"]["publicKeys"] == pem.strip()
    assert "PRIVATE" not in kyverno.render(pem, "x/*")


def test_a_private_key_or_garbage_is_refused():
    with pytest.raises(ValueError, match="PEM public key"):
        kyverno.render("-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----", "x/*")
