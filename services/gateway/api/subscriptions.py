"""Register, list and remove HTTP subscriptions (token-protected: URLs and secrets are sensitive).

A URL is accepted only if it resolves to public addresses, or its host is on the operator's
allow-list (KILN_SUBSCRIPTION_ALLOWED_HOSTS): 422 names the reason otherwise. At most
KILN_SUBSCRIPTIONS_MAX are active (409 beyond). Each listed subscription shows its circuit
breaker: `state` (active / paused / deleted), `consecutive_failures`, `paused_until`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from pydantic import AnyHttpUrl, BaseModel, Field

from services.gateway.api.db import in_session
from services.gateway.api.live import TOPIC_PATTERN
from services.gateway.auth import WriteAccess
from services.gateway.deps import Deps
from services.gateway.subscriptions import store, targets
from shared.redaction import redact_data

router = APIRouter(tags=["subscriptions"], dependencies=[WriteAccess])


class NewSubscription(BaseModel):
    url: AnyHttpUrl
    filter: Annotated[str, Field(pattern=TOPIC_PATTERN)] = "#"


@router.post("/subscriptions", status_code=201)
async def create_subscription(body: NewSubscription, deps: Deps) -> dict[str, Any]:
    """Returns the signing secret once: verify `X-Kiln-Signature` with it."""
    url = str(body.url)
    if len(url) > 1000:
        raise HTTPException(422, "the URL is longer than 1000 characters")
    resolver = deps.subscriptions.resolver if deps.subscriptions is not None else targets.resolve
    try:
        await targets.check(url, targets.AllowList(deps.settings.subscription_allow_list()), resolver)
    except targets.TargetRefused as exc:
        raise HTTPException(422, f"subscription refused: {exc}") from None
    limit = deps.settings.subscriptions_max
    if await in_session(deps, store.count_active) >= limit:
        raise HTTPException(409, f"{limit} subscriptions exist (KILN_SUBSCRIPTIONS_MAX): delete one first")
    created = await in_session(deps, store.create, url, body.filter)
    _changed(deps)
    return created


@router.get("/subscriptions")
async def list_subscriptions(deps: Deps) -> list[dict[str, Any]]:
    return redact_data(await in_session(deps, store.list_all))  # a URL stored before userinfo was refused


@router.delete("/subscriptions/{subscription_id}", status_code=204)
async def delete_subscription(subscription_id: int, deps: Deps) -> None:
    if not await in_session(deps, store.deactivate, subscription_id):
        raise HTTPException(404, f"no subscription {subscription_id}")
    _changed(deps)


def _changed(deps: Deps) -> None:
    if deps.subscriptions is not None:
        deps.subscriptions.invalidate()
