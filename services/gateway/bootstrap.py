"""The one place that wires settings, the bus, the database and the routes of the gateway.

Unit tests call `build_deps` with fakes (a recording publisher, an in-memory ledger)."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from fastapi import FastAPI

from services.gateway.app import create_app
from services.gateway.deps import GatewayDeps
from services.gateway.ledger import SqlDeliveryLedger
from services.gateway.live import LiveHub
from services.gateway.ports import DeliveryLedger, Publisher
from services.gateway.settings import GatewaySettings
from services.gateway.starter import BuildStarter
from services.gateway.subscriptions.delivery import SubscriptionDeliverer
from shared.bus import Bus, topology
from shared.config import KilnConfig, load_config
from shared.db import make_engine, make_sessions

log = logging.getLogger("kiln.gateway")
# Enough connections for 50 concurrent webhook deliveries without queueing on the pool.
DB_POOL = {"pool_size": 20, "max_overflow": 40}
# A subscriber slower than this counts as failed for that attempt (it is retried with back-off).
SUBSCRIBER_TIMEOUT_S = 10.0


def load_pipeline_config(settings: GatewaySettings) -> KilnConfig | None:
    if not settings.config_path:
        log.warning("KILN_CONFIG_PATH is not set: pushes will start no builds")
        return None
    return load_config(settings.config_path)


def build_deps(
    settings: GatewaySettings,
    *,
    publisher: Publisher,
    ledger: DeliveryLedger,
    config: KilnConfig | None,
    sessions: Any = None,
    bus: Bus | None = None,
) -> GatewayDeps:
    return GatewayDeps(
        settings=settings,
        config=config,
        starter=BuildStarter(publisher=publisher, ledger=ledger, config=config),
        publisher=publisher,
        sessions=sessions,
        live=LiveHub(),
        bus=bus,
    )


def bootstrap(settings: GatewaySettings, *, config: KilnConfig | None = None) -> FastAPI:
    """The production app: a real Bus (connected at start-up), MariaDB sessions, live feed."""
    for provider in ("bitbucket_cloud", "bitbucket_server", "github"):
        if getattr(settings, f"{provider}_secret") is None:
            log.warning("KILN_%s_SECRET is not set: its deliveries are accepted unsigned", provider.upper())
    sessions = make_sessions(make_engine(settings.database_url, **DB_POOL))
    bus = Bus.from_settings(settings, source="gateway")
    deps = build_deps(
        settings,
        publisher=bus,
        ledger=SqlDeliveryLedger(sessions, pending_takeover_s=settings.pending_takeover_s),
        config=config if config is not None else load_pipeline_config(settings),
        sessions=sessions,
        bus=bus,
    )

    http = httpx.AsyncClient(timeout=SUBSCRIBER_TIMEOUT_S, follow_redirects=False)
    deliverer = SubscriptionDeliverer(sessions, http)
    deps.subscriptions = deliverer

    async def start() -> None:
        await bus.connect()
        await bus.subscribe_transient("live", ["#"], deps.live.on_message)
        await bus.subscribe_transient(
            "logs",
            ["#"],
            deps.live.on_log_message,
            exchange=topology.LOGS_EXCHANGE,
            arguments=topology.LIVE_LOG_QUEUE_ARGUMENTS,
        )
        if settings.subscriptions_worker:
            # No SQL idempotency guard: it would cost two transactions per event on a queue bound
            # to `#`; receivers dedupe on X-Kiln-Delivery (documented at-least-once delivery).
            await bus.consume(topology.GATEWAY_SUBSCRIPTIONS, deliverer.handlers())

    async def stop() -> None:
        deps.live.close()
        await bus.stop(grace_s=10)
        await http.aclose()

    return create_app(deps, on_startup=start, on_shutdown=stop)
