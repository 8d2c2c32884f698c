"""The operator's keys: generate them when none exist, load them when they do.

Two keys, both provided by the operator (files or mounted k8s Secrets):
- a GPG key in its own keyring (GNUPGHOME) for skopeo's simple signing; its exported public key
  is what a containers policy.json `signedBy` requirement names;
- an ECDSA P-256 key pair (PEM) for the cosign-format signature and the DSSE envelope of the
  provenance; the public half is what `cosign verify --key` and Kyverno take.

Key bytes never leave these files: nothing here logs or returns a private key's text.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

GPG_HOME = "gnupg"
GPG_PUBLIC = "gpg-public.asc"
COSIGN_KEY = "cosign.key"
COSIGN_PUBLIC = "cosign.pub"
# The lookaside store the signatures go to; made here so that a container runtime mounting it
# (the compose deployer, read-only) finds it, rather than creating it root-owned.
LOOKASIDE = "sigstore"
KEY_NAME = "Kiln attester"
KEY_EMAIL = "attester@kiln.invalid"


class KeyProblem(RuntimeError):
    """A key is missing, unreadable or of the wrong kind (named after the file, never its bytes)."""


@dataclass(frozen=True)
class GeneratedKeys:
    directory: Path
    gpg_home: Path
    gpg_fingerprint: str
    gpg_public_key: Path
    cosign_key: Path
    cosign_public_key: Path

    def settings_lines(self) -> list[str]:
        """What the operator puts in the attester's environment (paths and a fingerprint only)."""
        return [
            f"KILN_ATTEST_GPG_HOME={self.gpg_home}",
            f"KILN_ATTEST_GPG_FINGERPRINT={self.gpg_fingerprint}",
            f"KILN_ATTEST_GPG_PUBLIC_KEY={self.gpg_public_key}",
            f"KILN_ATTEST_COSIGN_KEY={self.cosign_key}",
            f"KILN_ATTEST_COSIGN_PUBLIC_KEY={self.cosign_public_key}",
        ]


def generate(directory: Path, *, passphrase: str | None = None, name: str = KEY_NAME) -> GeneratedKeys:
    """Create both keys under `directory`; refuses to overwrite any that exist."""
    directory = directory.expanduser()
    targets = [directory / p for p in (GPG_HOME, GPG_PUBLIC, COSIGN_KEY, COSIGN_PUBLIC)]
    existing = [str(p) for p in targets if p.exists()]
    if existing:
        raise KeyProblem(f"keys already exist, not overwriting: {', '.join(existing)}")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / LOOKASIDE).mkdir(exist_ok=True)
    fingerprint = generate_gpg_key(directory / GPG_HOME, passphrase=passphrase, name=name)
    export_gpg_public_key(directory / GPG_HOME, fingerprint, directory / GPG_PUBLIC)
    generate_ecdsa_key(directory / COSIGN_KEY, directory / COSIGN_PUBLIC, passphrase=passphrase)
    return GeneratedKeys(
        directory,
        directory / GPG_HOME,
        fingerprint,
        directory / GPG_PUBLIC,
        directory / COSIGN_KEY,
        directory / COSIGN_PUBLIC,
    )


def _gpg(home: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        # gpg's stderr names files and key ids, never secret key material.
        command = next(a for a in args if a.startswith("--") and a != "--pinentry-mode")
        raise KeyProblem(f"gpg {command} failed: {result.stderr.strip()[-500:]}")
    return result.stdout


def generate_gpg_key(home: Path, *, passphrase: str | None = None, name: str = KEY_NAME) -> str:
    """A signing-only RSA 3072 key in a fresh keyring; returns its fingerprint.

    RSA rather than ed25519: the Go OpenPGP code some verifiers fall back to reads only RSA.
    The parameters (and a passphrase) go to gpg on stdin, never on the command line.
    """
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    home.chmod(0o700)
    protection = f"Passphrase: {passphrase}" if passphrase else "%no-protection"
    params = "\n".join(
        [
            "Key-Type: RSA",
            "Key-Length: 3072",
            "Key-Usage: sign",
            f"Name-Real: {name}",
            f"Name-Email: {KEY_EMAIL}",
            "Expire-Date: 0",
            protection,  # after Key-Type: gpg wants the block to start with it
            "%commit",
            "",
        ]
    )
    _gpg(home, "--pinentry-mode", "loopback", "--gen-key", stdin=params)
    return gpg_fingerprint(home)


def gpg_fingerprint(home: Path) -> str:
    """The fingerprint of the (first) secret key in `home`."""
    listing = _gpg(home, "--with-colons", "--list-secret-keys")
    for line in listing.splitlines():
        if line.startswith("fpr:"):
            return line.split(":")[9]
    raise KeyProblem(f"no secret key in {home}")


def export_gpg_public_key(home: Path, fingerprint: str, target: Path) -> None:
    armored = _gpg(home, "--armor", "--export", fingerprint)
    if "PUBLIC KEY BLOCK" not in armored:
        raise KeyProblem(f"gpg exported no public key for {fingerprint}")
    target.write_text(armored)
    target.chmod(0o644)


def generate_ecdsa_key(private: Path, public: Path, *, passphrase: str | None = None) -> None:
    """PKCS#8 PEM private key (0600, encrypted when a passphrase is given) and its SPKI PEM public key."""
    key = ec.generate_private_key(ec.SECP256R1())
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    # Created 0600 from the start: the key is never readable by others, not even for a moment.
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public.write_bytes(public_pem(key.public_key()))
    public.chmod(0o644)


def public_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(path: Path, passphrase: str | None = None) -> ec.EllipticCurvePrivateKey:
    try:
        data = path.expanduser().read_bytes()
    except OSError as exc:
        raise KeyProblem(f"cannot read the signing key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, passphrase.encode() if passphrase else None)
    except (ValueError, TypeError):
        # The message of cryptography's error could quote nothing secret, but say only what we know.
        raise KeyProblem(f"{path} is not a PEM private key (or the passphrase is wrong)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise KeyProblem(f"{path} is not an ECDSA P-256 key")
    return key


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(path.expanduser().read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyProblem(f"cannot read the public key {path}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise KeyProblem(f"{path} is not an ECDSA public key")
    return key
