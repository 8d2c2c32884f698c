"""The gateway's REST API as the CLI uses it (httpx). Errors become GatewayError with advice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from cli.settings import CliSettings


class GatewayError(Exception):
    """Printed to the user as is; says what to do next."""


class GatewayClient:
    def __init__(self, settings: CliSettings, *, transport: httpx.BaseTransport | None = None):
        headers = {}
        if settings.token is not None:
            headers["Authorization"] = f"Bearer {settings.token.get_secret_value()}"
        self.base_url = settings.gateway_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=30, transport=transport)

    def get(self, path: str, **params: Any) -> Any:
        return self._json(
            self._request("GET", path, params={k: v for k, v in params.items() if v is not None})
        )

    def get_text(self, path: str) -> str:
        return self._request("GET", path).text

    def post(self, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self._json(self._request("POST", path, json=body, params=clean))

    def stream(self, path: str, **params: Any) -> Iterator[tuple[str, dict[str, Any]]]:
        """(routing key, CloudEvent) pairs from an SSE endpoint, until the server ends the stream."""
        clean = {k: v for k, v in params.items() if v is not None}
        try:
            with self._http.stream(
                "GET", path, params=clean, timeout=httpx.Timeout(30, read=None)
            ) as response:
                self._check(response)
                event, data = "", ""
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        data = line[6:]
                    elif not line and data:
                        yield event, json.loads(data)
                        event, data = "", ""
        except httpx.TransportError as exc:
            raise GatewayError(self._unreachable(exc)) from None

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise GatewayError(self._unreachable(exc)) from None
        self._check(response)
        return response

    def _check(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        response.read()
        try:
            detail = response.json().get("detail") or response.json().get("reason")
        except (ValueError, AttributeError):
            detail = response.text[:300]
        hint = {
            401: " (set KILN_TOKEN to the gateway's API token)",
            503: " (the gateway's broker or database is down; retry shortly)",
        }.get(response.status_code, "")
        raise GatewayError(f"gateway answered {response.status_code}: {detail}{hint}")

    def _unreachable(self, exc: Exception) -> str:
        return f"cannot reach the gateway at {self.base_url} ({exc}); start it or set KILN_GATEWAY_URL"

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        return response.json()
