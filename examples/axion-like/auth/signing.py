"""`sha256=<hex>` body signatures and `subject.expiry.signature` tokens.

The key is the service's own: until the app's secrets are mounted, each process makes one at start
(so signatures do not outlive the process), and never logs or returns it."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time


def new_key() -> bytes:
    return secrets.token_bytes(32)


def sign(key: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(key: bytes, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(key, body), signature or "")


def issue_token(key: bytes, subject: str, ttl_s: int, now: float | None = None) -> str:
    if "." in subject:
        raise ValueError("a token subject may not contain '.'")
    expiry = int((now if now is not None else time.time()) + ttl_s)
    payload = f"{subject}.{expiry}"
    return f"{payload}.{sign(key, payload.encode()).removeprefix('sha256=')}"


def check_token(key: bytes, token: str, now: float | None = None) -> str:
    """The token's subject; ValueError when forged or expired."""
    subject, _, rest = token.partition(".")
    expiry, _, signature = rest.partition(".")
    if not verify(key, f"{subject}.{expiry}".encode(), "sha256=" + signature):
        raise ValueError("token signature does not match")
    if not expiry.isdigit() or int(expiry) < (now if now is not None else time.time()):
        raise ValueError("token expired")
    return subject
