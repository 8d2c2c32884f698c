"""Logging for every service: one line per record, build id attached, secrets redacted.

Redaction is a filter on the root handler, so a secret cannot reach a log line whichever
library logs it: registered secret values, URL user information, authorization values, known
token formats, PEM blocks (shared.redaction). With the JSON format it runs before encoding.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable

from shared.redaction import MASK, REDACT, Redactor

__all__ = ["MASK", "REDACT", "Redactor", "setup_logging"]


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
            # Mask first, encode second: JSON escapes `"`, `\\` and non-ASCII characters, so a
            # secret containing one would no longer match once encoded.
            return json.dumps({k: REDACT(v) if isinstance(v, str) else v for k, v in payload.items()})
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
