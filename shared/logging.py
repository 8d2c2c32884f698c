"""Logging for every service: one line per record, build id attached, secrets redacted.

Redaction is a filter on the root handler, so a secret cannot reach a log line whichever
library logs it: registered secret values, `user:password@` in URLs, bearer tokens, PEM blocks.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)
_BEARER = re.compile(r"(?P<k>(?:bearer|token|authorization)[\s:=]+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL)
MASK = "***"


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()):
        self._secrets: set[str] = {s for s in secrets if s and len(s) >= 4}

    def add(self, *secrets: str) -> None:
        self._secrets.update(s for s in secrets if s and len(s) >= 4)

    def __call__(self, text: str) -> str:
        text = _PEM.sub("[PRIVATE KEY REDACTED]", text)
        text = _URL_CREDENTIALS.sub(rf"\g<scheme>{MASK}@", text)
        text = _BEARER.sub(rf"\g<k>{MASK}", text)
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text


REDACT = Redactor()


class _RedactingFormatter(logging.Formatter):
    def __init__(self, fmt: str | None, as_json: bool):
        super().__init__(fmt)
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        if self.as_json:
            payload = {
                "time": self.formatTime(record),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
                "buildid": getattr(record, "buildid", None),
            }
            if record.exc_info:
                payload["exc"] = self.formatException(record.exc_info)
            return REDACT(json.dumps(payload))
        return REDACT(super().format(record))


def setup_logging(level: str = "INFO", *, fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    REDACT.add(*secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _RedactingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", as_json=fmt == "json")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aio_pika").setLevel("WARNING")
    logging.getLogger("aiormq").setLevel("WARNING")
