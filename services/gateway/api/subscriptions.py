"""Register, list and remove HTTP subscriptions (token-protected: URLs and secrets are sensitive)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from pydantic import AnyHttpUrl, BaseModel, Field

from services.gateway.api.db import in_session
from services.gateway.api.live import TOPIC_PATTERN
from services.gateway.auth import WriteAccess
from services.gateway.deps import Deps
from services.gateway.subscriptions import store

router = APIRouter(tags=["subscriptions"], dependencies=[WriteAccess])


class NewSubscription(BaseModel):
    url: AnyHttpUrl
    filter: Annotated[str, Field(pattern=TOPIC_PATTERN)] = "#"


@router.post("/subscriptions", status_code=201)
async def create_subscription(body: NewSubscription, deps: Deps) -> dict[str, Any]:
    """Returns the signing secret once: verify `X-Kiln-Signature` with it."""
    created = await in_session(deps, store.create, str(body.url)[:1000], body.filter)
    _changed(deps)
    return created


@router.get("/subscriptions")
async def list_subscriptions(deps: Deps) -> list[dict[str, Any]]:
    return await in_session(deps, store.list_all)


@router.delete("/subscriptions/{subscription_id}", status_code=204)
async def delete_subscription(subscription_id: int, deps: Deps) -> None:
    if not await in_session(deps, store.deactivate, subscription_id):
        raise HTTPException(404, f"no subscription {subscription_id}")
    _changed(deps)


def _changed(deps: Deps) -> None:
    if deps.subscriptions is not None:
        deps.subscriptions.invalidate()
