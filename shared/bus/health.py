"""A minimal HTTP health endpoint for worker processes (Kubernetes and compose probes).

Workers have no web framework; this answers `GET /healthz` (the process loop is alive) and
`GET /readyz` (its broker connection is up) on a port of their own, nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

_STATUS = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}


async def serve_health(port: int, ready: Callable[[], bool], host: str = "0.0.0.0") -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 5)
            path = request_line.split(b" ")[1].decode() if request_line.count(b" ") >= 2 else ""
            if path == "/healthz":
                code = 200
            elif path == "/readyz":
                code = 200 if ready() else 503
            else:
                code = 404
            body = _STATUS[code].encode()
            writer.write(
                f"HTTP/1.1 {code} {_STATUS[code]}\r\nContent-Length: {len(body)}\r\n"
                "Content-Type: text/plain\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
