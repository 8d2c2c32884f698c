"""What the routes need, wired once by bootstrap and reached through `request.app.state.deps`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from services.gateway.live import LiveHub
from services.gateway.settings import GatewaySettings
from services.gateway.starter import BuildStarter
from shared.config import KilnConfig


@dataclass
class GatewayDeps:
    settings: GatewaySettings
    config: KilnConfig | None
    starter: BuildStarter
    publisher: Any  # Publisher; the Bus in production
    sessions: sessionmaker[Session] | None
    live: LiveHub
    bus: Any = None  # the Bus, when connected (readiness, live feed, subscriptions)
    subscriptions: Any = None  # the SubscriptionDeliverer, told when subscriptions change
    groups: Any = None  # the ConcurrencyStore (concurrency.py), when there is a database


async def get_deps(request: Request) -> GatewayDeps:
    # async: a sync dependency would cost a thread-pool hop on every request
    return request.app.state.deps


Deps = Annotated[GatewayDeps, Depends(get_deps)]
