"""Registry errors, classified once: permanent (auth, not found, rejected) versus transient.

Callers map them onto the bus policy: `RegistryUnavailable` is worth a retry with back-off;
`RegistryAuthError` and `NotFound` will not heal by retrying and belong in the dead-letter queue.
"""

from __future__ import annotations


class RegistryError(Exception):
    """The registry refused a request for a reason retrying will not fix (a 4xx, a bad digest)."""

    def __init__(self, message: str, *, status: int | None = None, codes: tuple[str, ...] = ()):
        super().__init__(message)
        self.status = status
        self.codes = codes


class RegistryAuthError(RegistryError):
    """401/403: wrong or missing credentials, or not allowed. Permanent: fix the credentials."""


class NotFound(RegistryError):
    """404: no such repository, tag, manifest or blob."""


class RegistryUnavailable(RegistryError):
    """Connection refused, timeout, 429 or 5xx. Transient: retry later."""


class DigestMismatch(RegistryError):
    """Content does not hash to the digest it was asked for or announced: never use it."""
