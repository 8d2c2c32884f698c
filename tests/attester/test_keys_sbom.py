"""Key generation and the SBOM on the real registry and trivy."""

from __future__ import annotations

import json
import os
import stat

import pytest

from services.attester import keys
from services.attester.adapters.referrers import fallback_tag, pull_referrer, referrers
from services.attester.adapters.trivy_sbom import TrivySbom
from services.attester.attach import attach_sbom
from services.attester.sbom import SBOM_ARTIFACT_TYPE, SbomError, parse

pytestmark = pytest.mark.integration


def test_generate_makes_private_keys_0600_and_refuses_to_overwrite(operator_keys, tmp_path):
    assert stat.S_IMODE(operator_keys.cosign_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(operator_keys.gpg_home.stat().st_mode) == 0o700
    assert len(operator_keys.gpg_fingerprint) == 40
    assert "PUBLIC KEY BLOCK" in operator_keys.gpg_public_key.read_text()
    assert (operator_keys.directory / keys.LOOKASIDE).is_dir()  # compose mounts it into the deployer
    key = keys.load_private_key(operator_keys.cosign_key)
    assert key.curve.name == "secp256r1"
    assert keys.public_pem(key.public_key()) == operator_keys.cosign_public_key.read_bytes()
    with pytest.raises(keys.KeyProblem, match="already exist"):
        keys.generate(operator_keys.directory)
    # No private key text in what the operator is told to configure.
    assert not any("PRIVATE" in line for line in operator_keys.settings_lines())


def test_ecdsa_key_with_passphrase_needs_it(tmp_path):
    keys.generate_ecdsa_key(tmp_path / "k", tmp_path / "k.pub", passphrase="a long operator passphrase")
    assert b"ENCRYPTED" in (tmp_path / "k").read_bytes()
    with pytest.raises(keys.KeyProblem, match="passphrase"):
        keys.load_private_key(tmp_path / "k")
    assert keys.load_private_key(tmp_path / "k", "a long operator passphrase")


def test_sbom_of_a_debian_image_is_attached_as_a_referrer(registry, make_image):
    image = make_image("sbom")
    trivy = TrivySbom(
        os.environ["KILN_TRIVY"],
        "~/.cache/kiln/trivy",
        registry_credentials=(registry.username, os.environ["KILN_REGISTRY_PASSWORD"]),
    )
    sbom = trivy.sbom(image.reference)
    assert sbom.summary.packages > 50, sbom.summary  # a Debian minbase has ~100 dpkg packages
    assert sbom.summary.by_ecosystem.get("deb") == sbom.summary.packages

    digest = attach_sbom(registry, image.repo, image.digest, sbom)
    found = referrers(registry, image.repo, image.digest, SBOM_ARTIFACT_TYPE)
    assert [d["digest"] for d in found] == [digest]
    manifest, data = pull_referrer(registry, image.repo, found[0], image.digest)
    assert manifest["subject"]["digest"] == image.digest
    assert manifest["artifactType"] == SBOM_ARTIFACT_TYPE
    assert parse(data).summary == sbom.summary
    # The tag-schema fallback is an OCI index at sha256-<hex> (registry:2 has no referrers API).
    media_type, _, index = registry.get_manifest(image.repo, fallback_tag(image.digest))
    assert media_type == "application/vnd.oci.image.index.v1+json"
    assert json.loads(index)["manifests"][0]["artifactType"] == SBOM_ARTIFACT_TYPE
    # A second run replaces, never duplicates.
    attach_sbom(registry, image.repo, image.digest, sbom)
    assert len(referrers(registry, image.repo, image.digest, SBOM_ARTIFACT_TYPE)) == 1


def test_sbom_of_a_missing_image_is_an_error(registry, make_image):
    image = make_image("missing")
    trivy = TrivySbom(
        os.environ["KILN_TRIVY"],
        "~/.cache/kiln/trivy",
        timeout_s=60,
        registry_credentials=(registry.username, os.environ["KILN_REGISTRY_PASSWORD"]),
    )
    with pytest.raises(SbomError):
        trivy.sbom(f"{image.repository}@sha256:{'0' * 64}")
