"""Fakes for the gateway's unit tests (recording publisher, in-memory ledger) and the app built with
the same `build_deps` production uses. Integration tests prove the real adapters."""

from __future__ import annotations

import itertools
import secrets
from collections import defaultdict

from fastapi import FastAPI

from services.gateway.app import create_app
from services.gateway.bootstrap import build_deps
from services.gateway.ports import Claim, ClaimRequest
from services.gateway.settings import GatewaySettings
from shared.config import KilnConfig
from shared.events import Envelope


class RecordingPublisher:
    def __init__(self, fail: bool = False):
        self.published: list[Envelope] = []
        self.fail = fail

    async def publish(self, envelope: Envelope) -> None:
        if self.fail:
            raise ConnectionError("broker unreachable")
        self.published.append(envelope)


class MemoryLedger:
    def __init__(self) -> None:
        self.keys: dict[str, str] = {}
        self.counters: dict[str, itertools.count] = defaultdict(lambda: itertools.count(1))

    def claim(self, requests: list[ClaimRequest]) -> list[Claim]:
        claims = []
        for request in requests:
            live = request.delivery_key is None or self._reserve(request.delivery_key)
            fresh = tuple(live and (key is None or self._reserve(key)) for key in request.keys)
            numbers = tuple(
                next(self.counters[p]) if new else None
                for p, new in zip(request.packages, fresh, strict=True)
            )
            claims.append(Claim(fresh=fresh, numbers=numbers))
        return claims

    def _reserve(self, key: str) -> bool:
        if key in self.keys:
            return False
        self.keys[key] = "pending"
        return True

    def confirm(self, keys: list[str]) -> None:
        for key in keys:
            self.keys[key] = "published"

    def release(self, keys: list[str]) -> None:
        for key in keys:
            self.keys.pop(key, None)


def make_secrets() -> dict[str, str]:
    return {name: secrets.token_hex(16) for name in ("bitbucket_cloud", "bitbucket_server", "github", "api")}


def fake_app(
    config: KilnConfig | None, secret_values: dict[str, str] | None, publisher: RecordingPublisher
) -> FastAPI:
    values = secret_values or {}
    settings = GatewaySettings(
        bitbucket_cloud_secret=values.get("bitbucket_cloud"),
        bitbucket_server_secret=values.get("bitbucket_server"),
        github_secret=values.get("github"),
        api_token=values.get("api"),
        bitbucket_server_url="https://bitbucket.example.com",
        # No secrets at all: an app for parser tests, which must opt in to unsigned deliveries.
        allow_unsigned_bitbucket_cloud=secret_values is None,
        allow_unsigned_bitbucket_server=secret_values is None,
        allow_unsigned_github=secret_values is None,
    )
    deps = build_deps(settings, publisher=publisher, ledger=MemoryLedger(), config=config)
    return create_app(deps)
