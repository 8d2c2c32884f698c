"""Token checks: mutating endpoints always, reads when `reads_require_token()` (beyond loopback).

The API token comes as `Authorization: Bearer <token>`. A browser cannot add that header to a
page load or an EventSource, so reads also take it as the password of HTTP Basic (any user
name): the browser asks once and sends it with every same-origin request, SSE included. Writes
take Bearer only (see require_token).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, status

from services.gateway.deps import Deps

BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}
# Reads challenge with Basic (Bearer clients send their header regardless): a browser answers it
# from its cache for the realm, so the dashboard's EventSource (under /builds/, outside the
# page's path) gets the token too. Chromium reads only the first challenge of a header line, so
# "Bearer, Basic …" would not do.
BROWSER_CHALLENGE = {"WWW-Authenticate": 'Basic realm="Kiln", charset="UTF-8"'}


def presented_token(authorization: str | None, *, basic: bool = True) -> bytes | None:
    scheme, _, given = (authorization or "").strip().partition(" ")
    if scheme.lower() == "bearer":
        return given.strip().encode("utf-8", "replace")
    if scheme.lower() == "basic" and basic:
        try:
            decoded = base64.b64decode(given.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        return decoded.partition(b":")[2]
    return None


def _check(deps: Deps, authorization: str | None, challenge: dict[str, str], *, basic: bool = True) -> None:
    token = deps.settings.api_token
    if token is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "no KILN_API_TOKEN configured: endpoint disabled")
    given = presented_token(authorization, basic=basic)
    # Settings refuse an empty token at start-up; the length check here keeps "" from ever matching.
    if not given or not hmac.compare_digest(given, token.get_secret_value().encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "API token missing or wrong", challenge)


async def require_token(deps: Deps, authorization: Annotated[str | None, Header()] = None) -> None:
    # Bearer only: a browser re-sends cached Basic credentials with any request to this origin,
    # also one a hostile page makes it send (CSRF); it never adds a Bearer header by itself.
    _check(deps, authorization, BEARER_CHALLENGE, basic=False)


async def require_read(deps: Deps, authorization: Annotated[str | None, Header()] = None) -> None:
    if deps.settings.reads_require_token():
        _check(deps, authorization, BROWSER_CHALLENGE)


WriteAccess = Depends(require_token)
ReadAccess = Depends(require_read)
