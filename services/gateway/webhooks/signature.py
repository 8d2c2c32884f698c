"""HMAC signatures of webhook bodies: `X-Hub-Signature[-256]: sha256=<hex>` over the raw bytes."""

from __future__ import annotations

import hashlib
import hmac

_ALGORITHMS = {"sha256": hashlib.sha256}


class SignatureError(Exception):
    """Missing, malformed or wrong signature: the delivery is refused with 401."""


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> None:
    """Raise SignatureError unless `header` is `<algo>=<hex>` of `body` under `secret`."""
    if not header:
        raise SignatureError("signature header missing")
    algo, sep, received = header.strip().partition("=")
    if not sep or algo.lower() not in _ALGORITHMS:
        raise SignatureError("signature must look like sha256=<hex>")
    expected = hmac.new(secret.encode(), body, _ALGORITHMS[algo.lower()]).hexdigest()
    # compare_digest on bytes: constant time, and no TypeError on non-ASCII input.
    if not hmac.compare_digest(expected.encode(), received.strip().lower().encode("utf-8", "replace")):
        raise SignatureError("signature does not match the body")
