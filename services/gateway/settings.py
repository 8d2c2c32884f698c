"""The gateway's settings (KILN_*), read once at start-up by bootstrap."""

from __future__ import annotations

from pydantic import Field, SecretStr

from shared.sources import SourceSettings

MAX_WEBHOOK_BODY = 256 * 1024  # Bitbucket's own payload limit; anything bigger is not a real push


# SourceSettings: the provider base URLs (KILN_GITHUB_URL ...) a package's clone URL is derived from.
class GatewaySettings(SourceSettings):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # Bearer token for mutating endpoints (trigger, cancel, replay, subscriptions, generic webhook).
    api_token: SecretStr | None = None
    # When true, reads (builds, events, dashboard) need the token as well.
    read_requires_token: bool = False
    # HMAC secrets per provider; unset means that provider's deliveries are not signature-checked.
    bitbucket_cloud_secret: SecretStr | None = None
    bitbucket_server_secret: SecretStr | None = None
    github_secret: SecretStr | None = None
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
    # A newer push to a branch cancels that branch's builds that are still queued.
    supersede_queued: bool = False
    # Limits (docs/gateway.md "Limits"): refs of one delivery that start builds, and builds of one
    # package and branch queued or running at once (a push beyond it is answered 429).
    max_refs_per_delivery: int = Field(20, ge=1, le=1000)
    max_builds_per_branch: int = Field(5, ge=1, le=1000)
