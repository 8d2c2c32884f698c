"""Liveness, readiness (broker and database reachable) and Prometheus metrics."""

from __future__ import annotations

from anyio import to_thread
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from services.gateway import metrics
from services.gateway.deps import Deps

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(deps: Deps) -> JSONResponse:
    checks = {"broker": bool(deps.bus is not None and deps.bus.connected), "database": False}
    if deps.sessions is not None:
        try:
            await to_thread.run_sync(_ping, deps)
            checks["database"] = True
        except Exception:  # any failure means "not ready"; the reason is not for the public
            checks["database"] = False
    ready = all(checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", **checks}, 200 if ready else 503)


def _ping(deps: Deps) -> None:
    assert deps.sessions is not None
    with deps.sessions() as session:
        session.execute(text("SELECT 1"))


@router.get("/metrics")
async def prometheus_metrics() -> Response:
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
