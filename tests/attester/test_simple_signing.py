"""GPG simple signing through the real skopeo, checked by a real containers policy (signedBy):
unsigned rejected, signed accepted, signed by another key rejected, and the digest unchanged."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from services.attester import keys
from shared.skopeo import SigningError, SkopeoSigner

pytestmark = pytest.mark.integration


@pytest.fixture
def signer(registry, tmp_path):
    yield SkopeoSigner(
        lookaside_dir=tmp_path / "lookaside",
        registry_credentials=(registry.username, os.environ["KILN_REGISTRY_PASSWORD"]),
    )


@pytest.fixture(scope="module", autouse=True)
def stop_gpg_agents(operator_keys, other_keys):
    yield
    for home in (operator_keys.gpg_home, other_keys.gpg_home):
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)


def sign(signer, image, keys):
    return signer.sign(
        image.repository, image.digest, gpg_home=keys.gpg_home, fingerprint=keys.gpg_fingerprint
    )


def test_unsigned_image_is_rejected(signer, make_image, operator_keys):
    image = make_image("unsigned")
    verdict = signer.verify(image.repository, image.digest, public_key=operator_keys.gpg_public_key)
    assert not verdict.accepted, verdict.reason
    assert verdict.reason.endswith("Source image rejected: A signature was required, but no signature exists")


def test_signed_image_is_accepted_and_keeps_its_digest(signer, registry, make_image, operator_keys):
    image = make_image("signed")
    signature = sign(signer, image, operator_keys)
    assert signature.digest == image.digest
    assert registry.manifest_digest(image.repo, "t") == image.digest
    assert os.path.getsize(signature.location) > 100
    verdict = signer.verify(image.repository, image.digest, public_key=operator_keys.gpg_public_key)
    assert verdict.accepted, verdict.reason


def test_signing_writes_no_tag(signer, registry, make_image, operator_keys):
    """A tag that moved on to a newer image since the push stays where it is."""
    image = make_image("moved-tag")
    media_type, newer, data = registry.get_manifest("kiln/base", "bookworm-arm64")
    for blob in json.loads(data)["layers"] + [json.loads(data)["config"]]:
        registry.copy_blob(image.repo, blob["digest"], "kiln/base")
    registry.put_manifest(image.repo, "t", data, media_type)
    sign(signer, image, operator_keys)
    assert registry.manifest_digest(image.repo, "t") == newer != image.digest
    assert registry.list_tags(image.repo) == ["t"]
    assert signer.verify(image.repository, image.digest, public_key=operator_keys.gpg_public_key).accepted


def test_image_signed_by_another_key_is_rejected(signer, make_image, operator_keys, other_keys):
    image = make_image("other")
    sign(signer, image, other_keys)
    assert signer.verify(image.repository, image.digest, public_key=other_keys.gpg_public_key).accepted
    verdict = signer.verify(image.repository, image.digest, public_key=operator_keys.gpg_public_key)
    assert not verdict.accepted, verdict.reason
    assert "Source image rejected: Invalid GPG signature" in verdict.reason


def test_signature_of_one_repository_does_not_cover_another(signer, make_image, operator_keys):
    signed, copy = make_image("here"), make_image("there")  # same digest, other repository
    sign(signer, signed, operator_keys)
    verdict = signer.verify(copy.repository, copy.digest, public_key=operator_keys.gpg_public_key)
    assert not verdict.accepted, verdict.reason
    assert "no signature exists" in verdict.reason


def test_passphrase_protected_key_signs_with_the_passphrase_only(signer, make_image, tmp_path):
    made = keys.generate(tmp_path / "protected", passphrase="an operator passphrase of some length")
    try:
        image = make_image("passphrase")
        sign_args = {"gpg_home": made.gpg_home, "fingerprint": made.gpg_fingerprint}
        with pytest.raises(SigningError):
            signer.sign(image.repository, image.digest, **sign_args, passphrase="wrong")
        signer.sign(
            image.repository,
            image.digest,
            **sign_args,
            passphrase="an operator passphrase of some length",
        )
        assert signer.verify(image.repository, image.digest, public_key=made.gpg_public_key).accepted
    finally:
        subprocess.run(["gpgconf", "--homedir", str(made.gpg_home), "--kill", "gpg-agent"], check=False)
