"""The FastAPI application: routers only; everything it uses comes from bootstrap (app.state.deps)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from services.gateway.api import builds, catalogue, health, live, rollback, subscriptions, trigger
from services.gateway.dashboard import views as dashboard
from services.gateway.deps import GatewayDeps
from services.gateway.webhooks import routes as webhooks

log = logging.getLogger("kiln.gateway")


def create_app(
    deps: GatewayDeps,
    *,
    on_startup: Callable[[], Awaitable[None]] | None = None,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if on_startup is not None:
            await on_startup()
        try:
            yield
        finally:
            if on_shutdown is not None:
                await on_shutdown()

    app = FastAPI(
        title="Kiln gateway",
        description="Webhooks, the build API, live events, replay, subscriptions and the dashboard.",
        version="1",
        lifespan=lifespan,
    )
    app.state.deps = deps
    app.add_exception_handler(DBAPIError, _database_unavailable)
    app.mount("/static", dashboard.static, name="static")
    for module in _routers():
        app.include_router(module.router)
    return app


async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    # Reads and subscriptions need MariaDB; when it is down the answer is "retry", not a crash.
    log.warning("database unavailable: %s", type(exc).__name__)
    return JSONResponse({"detail": "database unavailable, retry shortly"}, status_code=503)


def _routers():
    return [health, webhooks, trigger, rollback, builds, catalogue, live, subscriptions, dashboard]
