"""Masking credentials in text and in data structures: log lines, stage log tails, API answers.

What is masked (each with `***`, a PEM block with a marker):
- the secrets a process registered (its KILN_* secrets), also as they look once escaped by JSON
  or `repr` (a secret with `"`, `\\` or non-ASCII characters changes shape when encoded);
- the user information of any URL: `https://user:pass@host`, and `https://ghp_x@host` where the
  token is the user name;
- credentials after an authorization scheme (`Authorization: Basic …`, `Bearer …`, `token …`) and
  after `token=`, `password:`, `secret=`, `api_key=` and the like;
- token formats that are credentials wherever they appear (GitHub, GitLab, Slack, AWS keys …);
- private key PEM blocks.
In data structures (`redact_data`), strings are masked as above and the value of a key that
names a credential (`password`, `token`, `authorization` …) is masked whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

MASK = "***"
PEM_MASK = "[PRIVATE KEY REDACTED]"
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL)
_URL_USERINFO = re.compile(r"(?P<k>\b[a-z][a-z0-9+.-]*://)[^/\s@?#\"'<>]+@", re.IGNORECASE)
_AUTHORIZATION = re.compile(
    r"(?P<k>\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token|digest|negotiate)\s+)?+)"
    r"[^\s\"',;]+",
    re.IGNORECASE,
)
_SCHEME = re.compile(r"(?P<k>\b(?:bearer|basic|token)\s+)[\w.~+/=-]{8,}", re.IGNORECASE)
_ASSIGNMENT = re.compile(
    r"(?P<k>(?:token|api[_-]?key|password|passwd|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]{4,}",
    re.IGNORECASE,
)
_KNOWN_TOKENS = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|ATBB[A-Za-z0-9]{20,})"
)
_ASSIGNMENT_WORDS = ("token", "api_key", "api-key", "apikey", "password", "passwd", "secret")
_TOKEN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "xox", "AKIA", "ATBB")
# Keys whose whole value is a credential, in event data and API answers.
SECRET_KEYS = frozenset(
    {
        "authorization",
        "password",
        "passwd",
        "secret",
        "token",
        "api_token",
        "access_token",
        "api_key",
        "git_token",
        "private_key",
        "client_secret",
        "registry_password",
    }
)


def _shapes(secret: str) -> set[str]:
    """The secret as written, and as JSON (ASCII and not) and repr() would print it."""
    shapes = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
    }
    return {s for s in shapes if len(s) >= 4}


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()):
        self._secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        known = set(self._secrets)
        for secret in secrets:
            if secret and len(secret) >= 4:
                known |= _shapes(secret)
        # Longest first: a secret that contains another is masked whole.
        self._secrets = sorted(known, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        # Every log line passes here: each pattern runs only when a cheap substring test says it
        # could match (most lines hold none of them; 1-2 us instead of ~200 us a line).
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        if "-----BEGIN" in text:
            text = _PEM.sub(PEM_MASK, text)
        if "@" in text and "://" in text:
            text = _URL_USERINFO.sub(rf"\g<k>{MASK}@", text)
        lower = text.lower()
        if "authorization" in lower:
            text = _AUTHORIZATION.sub(rf"\g<k>{MASK}", text)
        if "bearer" in lower or "basic" in lower or "token" in lower:
            text = _SCHEME.sub(rf"\g<k>{MASK}", text)
        if ("=" in text or ":" in text) and any(word in lower for word in _ASSIGNMENT_WORDS):
            text = _ASSIGNMENT.sub(rf"\g<k>{MASK}", text)
        if any(prefix in text for prefix in _TOKEN_PREFIXES):
            text = _KNOWN_TOKENS.sub(MASK, text)
        return text

    def data(self, value: Any) -> Any:
        """A copy of JSON-like data with every string masked and credential-named keys blanked."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {
                key: (MASK if _names_secret(key) and value[key] else self.data(value[key])) for key in value
            }
        if isinstance(value, list | tuple):
            return [self.data(item) for item in value]
        return value


def _names_secret(key: Any) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in SECRET_KEYS


REDACT = Redactor()


def redact_data(value: Any) -> Any:
    """API answers and SSE events: masked with the process-wide REDACT (its registered secrets)."""
    return REDACT.data(value)


def redact_json(body: bytes | str) -> bytes:
    """A JSON document (a stored or live CloudEvent) with its credentials masked, re-encoded."""
    return json.dumps(redact_data(json.loads(body)), separators=(",", ":"), ensure_ascii=False).encode()
