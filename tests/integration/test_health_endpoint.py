"""Workers' probe endpoint answers for real over TCP."""

from __future__ import annotations

import httpx
import pytest

from shared.bus.health import serve_health

pytestmark = pytest.mark.integration


async def test_healthz_and_readyz_follow_the_connection_state():
    state = {"ready": False}
    server = await serve_health(0, lambda: state["ready"], host="127.0.0.1")
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code == 503
            state["ready"] = True
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/nope")).status_code == 404
    finally:
        server.close()
