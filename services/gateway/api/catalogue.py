"""`GET /api/catalogue`: the stages (shared.stages) and every routing key a client may see.

The dashboard's live view subscribes to these keys and the CLI may label stages with them, so a
stage added to the spec shows up without a client release."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.gateway.auth import ReadAccess
from shared.stages import catalogue, routing_keys

router = APIRouter(tags=["catalogue"])


@router.get("/api/catalogue", dependencies=[ReadAccess])
async def get_catalogue() -> dict[str, Any]:
    return {**catalogue(), "routing_keys": list(routing_keys())}
