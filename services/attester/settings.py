"""The attester's settings: where its keys are, where signatures go, where Trivy is.

Private keys are files the operator provides (mode 0600, or a mounted k8s Secret); settings hold
their paths, never their bytes. Passphrases are secrets and go to the redacting logger.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from shared.settings import KilnSettings


class AttesterSettings(KilnSettings):
    trivy: str = Field("trivy", description="path of the trivy binary (or a name on PATH)")
    trivy_cache_dir: str = Field("~/.cache/kiln/trivy", description="trivy's layer cache")
    trivy_timeout_s: float = Field(600, gt=0)
    skopeo: str = Field("skopeo", description="path of the skopeo binary")

    # GPG simple signing (skopeo --sign-by): the keyring and the key in it.
    attest_gpg_home: str = Field("~/.kiln/attest/gnupg", description="GNUPGHOME holding the signing key")
    attest_gpg_fingerprint: str | None = Field(None, description="fingerprint of the signing key")
    attest_gpg_passphrase: SecretStr | None = None
    # The exported public key: what a containers policy.json `signedBy` names as keyPath.
    attest_gpg_public_key: str = Field("~/.kiln/attest/gpg-public.asc")
    # Where skopeo writes signatures (lookaside-staging) and reads them (lookaside): one directory
    # here; other hosts read it over HTTP (serve the directory, give them its URL).
    attest_lookaside_dir: str = Field("~/.kiln/attest/sigstore")
    attest_lookaside_url: str | None = Field(None, description="lookaside URL readers use; default file://")

    # ECDSA P-256: the cosign-format signature and the DSSE envelope of the provenance.
    attest_cosign_key: str = Field("~/.kiln/attest/cosign.key", description="PKCS#8 PEM private key")
    attest_cosign_key_password: SecretStr | None = None
    attest_cosign_public_key: str = Field("~/.kiln/attest/cosign.pub")

    # The SLSA builder.id: who produced the provenance (an operator's URI for this Kiln).
    attest_builder_id: str = "https://kiln.dev/attester/v1"

    def path(self, value: str) -> Path:
        return Path(value).expanduser()
