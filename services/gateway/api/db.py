"""Running a synchronous database read from an async route (SQLAlchemy sessions are sync)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from anyio import to_thread
from fastapi import HTTPException

from services.gateway.deps import GatewayDeps

T = TypeVar("T")


async def in_session(deps: GatewayDeps, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    if deps.sessions is None:
        raise HTTPException(503, "no database configured")
    sessions = deps.sessions

    def run() -> T:
        with sessions() as session:
            return work(session, *args, **kwargs)

    return await to_thread.run_sync(run)
