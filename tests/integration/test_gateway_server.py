"""Runs the real gateway app under uvicorn on 127.0.0.1 (a free port) inside the test's loop."""

from __future__ import annotations

import asyncio
import socket
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from services.gateway.bootstrap import bootstrap
from tests.integration.test_gateway_webhooks import gateway_settings
from tests.unit.test_gateway_payloads import gateway_config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@asynccontextmanager
async def running_gateway(amqp_url: str, database_url: str, **overrides: Any):
    """`overrides`: GatewaySettings fields to change from the tests' defaults."""
    settings = gateway_settings(amqp_url, database_url).model_copy(update=overrides)
    app = bootstrap(settings, config=gateway_config())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        app.state.deps.live.close()  # open SSE streams would hold uvicorn's graceful shutdown
        server.should_exit = True
        await asyncio.wait_for(task, 20)
