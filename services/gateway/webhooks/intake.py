"""Reading a webhook request safely: bounded body, then parsed JSON (any failure is a 4xx)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request

from services.gateway.webhooks.changes import MalformedPayload


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body (signatures are over these exact bytes), refusing more than `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body of {declared} bytes is over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    """Strict JSON (orjson: invalid UTF-8, NaN, integers beyond 64 bits and nesting deeper than
    1024 are refused), so a malformed body is a 400 here, never an error further on."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedPayload(f"body is not JSON: {exc}") from None
