"""The one place that wires settings, the bus, the database and the routes of the gateway.

Unit tests call `build_deps` with fakes (a recording publisher, an in-memory ledger)."""

from __future__ import annotations

import asyncio
import logging
import os
from functools import partial
from typing import Any

import httpx
from fastapi import FastAPI

from services.gateway import concurrency_handlers
from services.gateway.app import create_app
from services.gateway.concurrency import ConcurrencyStore, Policy, policy_reader
from services.gateway.deps import GatewayDeps
from services.gateway.ledger import SqlDeliveryLedger
from services.gateway.live import LiveHub
from services.gateway.ports import DeliveryLedger, Publisher
from services.gateway.settings import (
    WEBHOOK_PROVIDERS,
    GatewaySettings,
    is_loopback_host,
    secret_variable,
    unsigned_variable,
)
from services.gateway.starter import BuildStarter
from services.gateway.subscriptions.delivery import SubscriptionDeliverer
from services.gateway.subscriptions.store import Breaker
from services.gateway.subscriptions.targets import AllowList
from services.gateway.workers import FileLease
from shared.bus import Bus, topology
from shared.bus.worker import Consumer, Subscription, start_consumers
from shared.config import KilnConfig, load_config
from shared.db import make_engine, make_sessions
from shared.logging import REDACT, setup_logging
from shared.settings import load_settings

log = logging.getLogger("kiln.gateway")
# Enough connections for 50 concurrent webhook deliveries without queueing on the pool.
DB_POOL = {"pool_size": 20, "max_overflow": 40}


def load_pipeline_config(settings: GatewaySettings) -> KilnConfig | None:
    if not settings.config_path:
        log.warning("KILN_CONFIG_PATH is not set: pushes will start no builds")
        return None
    return load_config(settings.config_path)


def warn_about_exposure(settings: GatewaySettings) -> None:
    """Say loudly at start what the operator opted out of (the dashboard shows it too)."""
    for provider in WEBHOOK_PROVIDERS:
        if settings.webhook_secret(provider) is not None:
            continue
        if settings.unsigned_allowed(provider):
            log.warning(
                "SECURITY: %s=true: %s deliveries are accepted UNSIGNED; anyone who reaches this "
                "gateway can start builds. Set %s instead.",
                unsigned_variable(provider),
                provider,
                secret_variable(provider),
            )
        else:
            log.info("%s is not set: %s deliveries are refused (401)", secret_variable(provider), provider)
    if not settings.reads_require_token() and not is_loopback_host(settings.host):
        log.warning(
            "SECURITY: KILN_READ_REQUIRES_TOKEN=false while listening on %s: builds, events and logs "
            "are readable by anyone who reaches it",
            settings.host,
        )
    elif settings.reads_require_token() and settings.api_token is None:
        log.warning("reads need a token but KILN_API_TOKEN is not set: the API and dashboard are closed")


def build_deps(
    settings: GatewaySettings,
    *,
    publisher: Publisher,
    ledger: DeliveryLedger,
    config: KilnConfig | None,
    sessions: Any = None,
    bus: Bus | None = None,
    groups: ConcurrencyStore | None = None,
) -> GatewayDeps:
    return GatewayDeps(
        settings=settings,
        config=config,
        starter=BuildStarter(publisher=publisher, ledger=ledger, config=config, groups=groups),
        publisher=publisher,
        sessions=sessions,
        live=LiveHub(),
        bus=bus,
        groups=groups,
    )


def bootstrap(settings: GatewaySettings, *, config: KilnConfig | None = None) -> FastAPI:
    """The production app: a real Bus (connected at start-up), MariaDB sessions, live feed."""
    warn_about_exposure(settings)
    REDACT.add(*settings.secret_values().values())  # API answers mask them too, not only log lines
    sessions = make_sessions(make_engine(settings.database_url, **DB_POOL))
    bus = Bus.from_settings(settings, source="gateway")
    config = config if config is not None else load_pipeline_config(settings)
    default = Policy(settings.concurrency_limit, settings.concurrency_mode)
    # A release not confirmed this long was lost with its process: the sweep publishes it again.
    groups = ConcurrencyStore(
        sessions, policy_reader(config, default), republish_after_s=settings.pending_takeover_s
    )
    deps = build_deps(
        settings,
        publisher=bus,
        ledger=SqlDeliveryLedger(sessions, pending_takeover_s=settings.pending_takeover_s),
        config=config,
        sessions=sessions,
        bus=bus,
        groups=groups,
    )

    # No redirects (a 302 could point anywhere), no environment proxies, no kept-alive connections
    # (requests go to checked addresses; one kept open for one host name must not carry another's).
    http = httpx.AsyncClient(
        timeout=settings.subscription_timeout_s,
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_keepalive_connections=0),
    )
    deliverer = SubscriptionDeliverer(
        sessions,
        http,
        timeout_s=settings.subscription_timeout_s,
        allow=AllowList(settings.subscription_allow_list()),
        breaker=Breaker(settings.subscription_breaker_failures, settings.subscription_pause_s),
    )
    deps.subscriptions = deliverer
    # Several workers on one host: only the one holding this lock delivers subscriptions.
    lease = FileLease(settings.subscriptions_lock) if settings.subscriptions_lock else None
    background: list[asyncio.Task[None]] = []
    # The broker consumers, described as every worker's are (shared/bus/worker.py).
    consumers: list[Consumer | Subscription] = [
        Subscription("live", ["#"], deps.live.on_message),
        Subscription(
            "logs",
            ["#"],
            deps.live.on_log_message,
            exchange=topology.LOGS_EXCHANGE,
            arguments=topology.LIVE_LOG_QUEUE_ARGUMENTS,
        ),
    ]
    # Concurrency groups: a build's end starts the next held build (no SQL guard: idempotent).
    consumers.append(
        Consumer(topology.GATEWAY_CONCURRENCY, concurrency_handlers.handlers(groups, bus), use_guard=False)
    )
    if settings.subscriptions_worker:
        # No SQL idempotency guard: it would cost two transactions per event on a queue bound
        # to `#`; receivers dedupe on X-Kiln-Delivery (documented at-least-once delivery).
        consumers.append(
            Consumer(
                topology.GATEWAY_SUBSCRIPTIONS,
                deliverer.handlers(),
                use_guard=False,
                wait_for=None if lease is None else partial(_lease_subscriptions, lease),
            )
        )

    async def start() -> None:
        await bus.connect()
        await start_consumers(bus, consumers, background=background)
        sweeps = concurrency_handlers.run_sweeps(
            groups,
            bus,
            sessions,
            interval_s=settings.concurrency_sweep_s,
        )
        background.append(asyncio.create_task(sweeps))

    async def stop() -> None:
        deps.live.close()
        for task in background:
            task.cancel()
        await deps.starter.drain()
        await bus.stop(grace_s=10)
        await http.aclose()
        if lease is not None:
            lease.release()

    return create_app(deps, on_startup=start, on_shutdown=stop)


async def _lease_subscriptions(lease: FileLease) -> None:
    """Several workers on one host: only the one holding the lock delivers subscriptions."""
    await lease.acquire()
    log.info("worker %d delivers the HTTP subscriptions", os.getpid())


def worker_app() -> FastAPI:
    """The app of one worker process (`python -m services.gateway --workers N` calls this in each)."""
    settings = load_settings(GatewaySettings)
    if settings.instance:  # transient queue names carry the instance: one per worker process
        settings = settings.model_copy(update={"instance": f"{settings.instance}-{os.getpid()}"})
    setup_logging(settings.log_level, fmt=settings.log_format, secrets=settings.secret_values().values())
    return bootstrap(settings)
