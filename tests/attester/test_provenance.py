"""SLSA v1 provenance: DSSE-signed with the operator key, attached to the real registry, and
verified by in-toto's and securesystemslib's own verifiers (not by code of ours)."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json

import pytest
from cryptography.hazmat.primitives import serialization
from in_toto.models.metadata import Envelope as InTotoEnvelope
from in_toto.models.metadata import Metadata, SignatureVerificationError
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

from services.attester import cosign, keys, provenance
from services.attester.adapters.referrers import pull_referrer, referrers
from services.attester.attach import attach_provenance

pytestmark = pytest.mark.integration

FACTS = provenance.BuildFacts(
    build_id="01JEXAMPLEBUILD",
    build_number=42,
    package="homechoice",
    source_repository="https://git.example.com/acme/homechoice.git",
    ref="refs/heads/develop",
    commit="3f2c1e0d9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e",
    config_digest="sha256:" + "c" * 64,
    started_on=dt.datetime(2026, 12, 2, 23, 0, tzinfo=dt.UTC),
    finished_on=dt.datetime(2026, 12, 2, 23, 5, tzinfo=dt.UTC),
    compiler_image="127.0.0.1:5000/kiln/compiler@sha256:" + "a" * 64,
    base_image="127.0.0.1:5000/kiln/base@sha256:" + "b" * 64,
    tier_requirements={"core": "d" * 64, "web": "e" * 64},
)


def independent_key(public_pem_path) -> SSlibKey:
    """The verifier's key from the public PEM file alone, by securesystemslib."""
    public = serialization.load_pem_public_key(public_pem_path.read_bytes())
    return SSlibKey.from_crypto(public, scheme="ecdsa-sha2-nistp256")


def make_envelope(image, keyset) -> bytes:
    document = provenance.statement(
        image.repository,
        image.digest,
        FACTS,
        builder_id="https://kiln.example.com/attester",
        target="web",
        platforms=("linux/amd64",),
    )
    return provenance.sign(document, keys.load_private_key(keyset.cosign_key))


def test_provenance_is_attached_and_in_toto_verifies_it(registry, make_image, operator_keys):
    image = make_image("provenance")
    digest = attach_provenance(registry, image.repo, image.digest, make_envelope(image, operator_keys))
    [found] = referrers(registry, image.repo, image.digest, provenance.PROVENANCE_ARTIFACT_TYPE)
    assert found["digest"] == digest
    assert found["annotations"]["in-toto.io/predicate-type"] == "https://slsa.dev/provenance/v1"
    manifest, data = pull_referrer(registry, image.repo, found, image.digest)
    assert manifest["layers"][0]["mediaType"] == "application/vnd.dsse.envelope.v1+json"

    key = independent_key(operator_keys.cosign_public_key)
    # in-toto's verifier.
    envelope = Metadata.from_dict(json.loads(data))
    assert isinstance(envelope, InTotoEnvelope)
    envelope.verify_signature({**key.to_dict(), "keyid": key.keyid})
    # securesystemslib's DSSE verifier.
    assert key.keyid in Envelope.from_dict(json.loads(data)).verify([key], 1)

    statement = json.loads(base64.b64decode(json.loads(data)["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert statement["subject"] == [{"name": image.repository, "digest": {"sha256": image.digest[7:]}}]
    definition = statement["predicate"]["buildDefinition"]
    assert definition["externalParameters"]["source"]["commit"] == FACTS.commit
    assert definition["internalParameters"]["buildNumber"] == 42
    assert definition["internalParameters"]["configDigest"] == FACTS.config_digest
    dependencies = {d.get("name", "source"): d["digest"] for d in definition["resolvedDependencies"]}
    assert dependencies == {
        "source": {"gitCommit": FACTS.commit},
        "compiler": {"sha256": "a" * 64},
        "base-image": {"sha256": "b" * 64},
        "requirements/core": {"sha256": "d" * 64},
        "requirements/web": {"sha256": "e" * 64},
    }
    run = statement["predicate"]["runDetails"]
    assert run["metadata"] == {
        "invocationId": FACTS.build_id,
        "startedOn": "2026-12-02T23:00:00Z",
        "finishedOn": "2026-12-02T23:05:00Z",
    }
    # Our reader agrees (the deployer's path).
    public = keys.load_public_key(operator_keys.cosign_public_key)
    assert provenance.open_envelope(data, public, image.digest) == statement


def test_other_key_tampered_payload_and_other_subject_are_refused(make_image, operator_keys, other_keys):
    image = make_image("provenance-bad")
    ours = independent_key(operator_keys.cosign_public_key)
    theirs = json.loads(make_envelope(image, other_keys))
    with pytest.raises(SignatureVerificationError):
        Metadata.from_dict(copy.deepcopy(theirs)).verify_signature({**ours.to_dict(), "keyid": ours.keyid})

    tampered = json.loads(make_envelope(image, operator_keys))
    statement = json.loads(base64.b64decode(tampered["payload"]))
    statement["predicate"]["buildDefinition"]["externalParameters"]["source"]["commit"] = "0" * 40
    tampered["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    with pytest.raises(SignatureVerificationError):
        Metadata.from_dict(copy.deepcopy(tampered)).verify_signature({**ours.to_dict(), "keyid": ours.keyid})

    public = keys.load_public_key(operator_keys.cosign_public_key)
    good = make_envelope(image, operator_keys)
    with pytest.raises(provenance.ProvenanceError, match="not sha256:1111"):
        provenance.open_envelope(good, public, "sha256:" + "1" * 64)
    with pytest.raises(provenance.ProvenanceError, match="does not verify"):
        provenance.open_envelope(json.dumps(tampered).encode(), public, image.digest)


def test_provenance_in_cosigns_attestation_form(registry, make_image, operator_keys, other_keys):
    image = make_image("provenance-att")
    public = keys.load_public_key(operator_keys.cosign_public_key)

    def push(envelope):
        return cosign.push_attestation(
            registry,
            image.repo,
            image.digest,
            envelope,
            provenance.SLSA_PROVENANCE,
            is_ours=lambda data: provenance.signed_by(data, public),
        )

    push(make_envelope(image, other_keys))  # a co-signer's, kept
    push(make_envelope(image, operator_keys))
    digest = push(make_envelope(image, operator_keys))  # a redelivery replaces ours
    media_type, checked, data = registry.get_manifest(image.repo, f"sha256-{image.digest[7:]}.att")
    assert checked == digest and media_type == "application/vnd.oci.image.manifest.v1+json"
    manifest = json.loads(data)
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert len(manifest["layers"]) == 2
    for layer in manifest["layers"]:
        assert layer["mediaType"] == "application/vnd.dsse.envelope.v1+json"
        assert layer["annotations"] == {
            "dev.cosignproject.cosign/signature": "",
            "predicateType": "https://slsa.dev/provenance/v1",
        }
    key = independent_key(operator_keys.cosign_public_key)
    ours = registry.get_blob(image.repo, manifest["layers"][1]["digest"])
    Metadata.from_dict(json.loads(ours)).verify_signature({**key.to_dict(), "keyid": key.keyid})
