"""Bearer-token checks: mutating endpoints always, reads when `read_requires_token` is set."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, status

from services.gateway.deps import Deps


def _check(deps: Deps, authorization: str | None) -> None:
    token = deps.settings.api_token
    if token is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "no KILN_API_TOKEN configured: mutations are disabled")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode("utf-8", "replace"), token.get_secret_value().encode()
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "bearer token missing or wrong", {"WWW-Authenticate": "Bearer"}
        )


async def require_token(deps: Deps, authorization: Annotated[str | None, Header()] = None) -> None:
    _check(deps, authorization)


async def require_read(deps: Deps, authorization: Annotated[str | None, Header()] = None) -> None:
    if deps.settings.read_requires_token:
        _check(deps, authorization)


WriteAccess = Depends(require_token)
ReadAccess = Depends(require_read)
