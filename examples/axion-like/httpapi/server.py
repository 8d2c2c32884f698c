"""A threaded HTTP server with the two paths Kiln probes and a service's own routes.

GET /healthz answers 200 as soon as the process serves. GET /status runs the service's self-checks
and answers the JSON harness (`?format=json`, the default) that Kiln's verify gates on.
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from core import jsonio
from core.checks import Check, run_checks
from core.lifecycle import is_compiled, log


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Response]


def json_response(status: int, value: object) -> Response:
    return Response(status, jsonio.dumps(value))


def status_document(service: str, checks: Callable[[], list[Check]]) -> dict:
    return {
        "service": service,
        "compiled": is_compiled(),
        "machine": platform.machine(),
        "tests": run_checks(checks()),
    }


class ServiceServer:
    """Routes are `(method, path)` -> handler; a path ending in `/` also serves everything below it."""

    def __init__(self, service: str, port: int, checks: Callable[[], list[Check]], routes: dict) -> None:
        self.service = service
        self.checks = checks
        self.routes: dict[tuple[str, str], Handler] = {
            ("GET", "/healthz"): lambda _r: json_response(200, {"status": "ok", "service": service}),
            ("GET", "/status"): self._status,
            **routes,
        }
        self._http = ThreadingHTTPServer(("0.0.0.0", port), _handler_class(self))
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._http.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def dispatch(self, request: Request) -> Response:
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            prefixes = [p for m, p in self.routes if m == request.method and p.endswith("/")]
            below = [p for p in prefixes if request.path.startswith(p)]
            handler = self.routes[(request.method, max(below, key=len))] if below else None
        if handler is None:
            return json_response(404, {"error": f"no route {request.method} {request.path}"})
        try:
            return handler(request)
        except ValueError as exc:  # bad input: the caller's fault, said plainly
            return json_response(400, {"error": str(exc)})
        except Exception as exc:  # a handler bug must not kill the server thread
            log(self.service, f"{request.method} {request.path} failed: {type(exc).__name__}: {exc}")
            return json_response(500, {"error": type(exc).__name__})

    def _status(self, request: Request) -> Response:
        if request.query.get("format", "json") != "json":
            return json_response(400, {"error": "this service answers /status?format=json only"})
        return json_response(200, status_document(self.service, self.checks))


def _handler_class(server: ServiceServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def _answer(self, method: str) -> None:
            url = urlsplit(self.path)
            length = min(int(self.headers.get("Content-Length") or 0), 1_000_000)
            request = Request(
                method=method,
                path=url.path,
                query={k: v[-1] for k, v in parse_qs(url.query).items()},
                body=self.rfile.read(length) if length else b"",
                headers={k.lower(): v for k, v in self.headers.items()},
            )
            response = server.dispatch(request)
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)

        def log_message(self, format: str, *args: object) -> None:
            if "/healthz" not in self.path:  # probes every few seconds would drown the rest
                log(server.service, format % args)

    return _Handler
