"""HttpProbe over httpx."""

from __future__ import annotations

import httpx


class HttpxProbe:
    def get(self, url: str, timeout_s: float) -> tuple[int, str]:
        try:
            response = httpx.get(url, timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise OSError(f"{type(exc).__name__}: {exc}") from exc
        return response.status_code, response.text
