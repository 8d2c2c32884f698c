"""Generate a package's RSA key pair outside the source tree; never overwrite by accident."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KEY_BITS = 2048


def key_paths(directory: str | os.PathLike, package: str) -> tuple[Path, Path]:
    """(`{package}_private.pem`, `{package}_public.pem`) inside `directory`."""
    base = Path(directory).expanduser()
    return base / f"{package}_private.pem", base / f"{package}_public.pem"


def generate_keys(directory: str | os.PathLike, package: str, *, force: bool = False) -> tuple[Path, Path]:
    """Write a fresh RSA-2048 pair; the private key is created with mode 0600 from the start."""
    private_path, public_path = key_paths(directory, package)
    if not force and (private_path.exists() or public_path.exists()):
        raise FileExistsError(f"keys for {package} already exist in {private_path.parent}")
    private_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for path in (private_path, public_path):
        path.unlink(missing_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(public_pem)
    public_path.chmod(0o644)
    return private_path, public_path
