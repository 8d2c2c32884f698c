"""The gateway's settings (KILN_*), read once at start-up by bootstrap."""

from __future__ import annotations

import ipaddress
from typing import ClassVar, Literal

from pydantic import Field, SecretStr

from shared.sources import SourceSettings

MAX_WEBHOOK_BODY = 256 * 1024  # Bitbucket's own payload limit; anything bigger is not a real push
WEBHOOK_PROVIDERS = ("bitbucket-cloud", "bitbucket-server", "github")


def is_loopback_host(host: str) -> bool:
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a name or 0.0.0.0 / :: : reachable from elsewhere


# SourceSettings: the provider base URLs (KILN_GITHUB_URL ...) a package's clone URL is derived from.
class GatewaySettings(SourceSettings):
    VERIFIED_SECRETS: ClassVar[frozenset[str]] = frozenset(
        {"api_token", "bitbucket_cloud_secret", "bitbucket_server_secret", "github_secret"}
    )

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # Bearer token for mutating endpoints (trigger, cancel, replay, subscriptions, generic webhook).
    api_token: SecretStr | None = None
    # Reads (builds, events, logs, dashboard) need the token as well. Unset: they do whenever the
    # gateway listens beyond loopback (`reads_require_token`).
    read_requires_token: bool | None = None
    # HMAC secrets per provider; a provider without one is refused (401) unless allowed unsigned.
    bitbucket_cloud_secret: SecretStr | None = None
    bitbucket_server_secret: SecretStr | None = None
    github_secret: SecretStr | None = None
    # Explicit opt-in to accept a provider's deliveries without a signature (logged, shown on the
    # dashboard): anyone who reaches the gateway can then start that provider's builds.
    allow_unsigned_bitbucket_cloud: bool = False
    allow_unsigned_bitbucket_server: bool = False
    allow_unsigned_github: bool = False
    max_webhook_body: int = Field(MAX_WEBHOOK_BODY, ge=1024)
    # A redelivery whose first attempt is still "pending" after this long is taken over (crash safety).
    pending_takeover_s: float = Field(60.0, gt=0)
    # Worker processes of `python -m services.gateway` (default: one per CPU it may use).
    workers: int | None = Field(None, ge=1, le=64)
    # Deliver HTTP subscriptions from this process (turn off to run them in a separate replica).
    subscriptions_worker: bool = True
    # Set by `python -m services.gateway` for its worker processes, not by hand: only the worker
    # holding a lock on this file delivers HTTP subscriptions (services/gateway/workers.py).
    subscriptions_lock: str | None = None
    # HTTP subscriptions reach public addresses only; these hosts (names, IPs or CIDR networks,
    # comma-separated) may be private: an operator's own receivers.
    subscription_allowed_hosts: str = ""
    subscriptions_max: int = Field(100, ge=0, le=10_000)
    # Per attempt, the whole request (connect, send, answer); a slower receiver counts as failed.
    subscription_timeout_s: float = Field(5.0, gt=0, le=60)
    # Circuit breaker: after this many consecutive failed events a subscription pauses for
    # subscription_pause_s, doubled on each further failure (capped at an hour).
    subscription_breaker_failures: int = Field(5, ge=1, le=1000)
    subscription_pause_s: float = Field(60.0, gt=0, le=3600)
    # A newer push to a branch cancels that branch's builds that are still queued.
    supersede_queued: bool = False
    # Limits (docs/gateway.md "Limits"): refs of one delivery that start builds, and builds of one
    # package and branch queued or running at once (a push beyond it is answered 429).
    max_refs_per_delivery: int = Field(20, ge=1, le=1000)
    max_builds_per_branch: int = Field(5, ge=1, le=1000)
    # Concurrency groups (docs/gateway.md): builds of one package and branch running at once (0:
    # no group), and what a newer push does when the group is full. A package's `concurrency:`
    # section in the operator config overrides either.
    concurrency_limit: int = Field(1, ge=0, le=100)
    concurrency_mode: Literal["queue", "supersede"] = "queue"
    # How often the gateway re-checks its groups against the run history (a build.finished it
    # missed, a start it could not publish): the bound on how long a freed slot can stay unused.
    concurrency_sweep_s: float = Field(30.0, gt=0, le=3600)

    def reads_require_token(self) -> bool:
        if self.read_requires_token is not None:
            return self.read_requires_token
        return not is_loopback_host(self.host)

    def unsigned_allowed(self, provider: str) -> bool:
        """A provider (`github`, `bitbucket-cloud` …) that has no secret may deliver unsigned."""
        return bool(getattr(self, f"allow_unsigned_{provider.replace('-', '_')}"))

    def unsigned_providers(self) -> list[str]:
        """Providers whose deliveries are accepted without a signature (no secret, opted in)."""
        return [p for p in WEBHOOK_PROVIDERS if self.webhook_secret(p) is None and self.unsigned_allowed(p)]

    def webhook_secret(self, provider: str) -> SecretStr | None:
        return getattr(self, f"{provider.replace('-', '_')}_secret")

    def subscription_allow_list(self) -> tuple[str, ...]:
        return tuple(h.strip().lower() for h in self.subscription_allowed_hosts.split(",") if h.strip())


def secret_variable(provider: str) -> str:
    return f"KILN_{provider.replace('-', '_').upper()}_SECRET"


def unsigned_variable(provider: str) -> str:
    return f"KILN_ALLOW_UNSIGNED_{provider.replace('-', '_').upper()}"
