"""Prometheus metrics of the gateway (served at /metrics).

Under several worker processes (workers.py) every worker writes its values to files in
PROMETHEUS_MULTIPROC_DIR and /metrics answers their sum, whichever worker serves the scrape.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

from services.gateway.workers import METRICS_DIR_VARIABLE

WEBHOOKS = Counter(
    "kiln_gateway_webhooks_total", "Webhook deliveries by provider and outcome", ["provider", "outcome"]
)
BUILDS_REQUESTED = Counter("kiln_gateway_builds_requested_total", "build.requested published", ["trigger"])
WEBHOOK_LATENCY = Histogram(
    "kiln_gateway_webhook_seconds",
    "Webhook handling time, receipt to broker confirm",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SUBSCRIPTION_DELIVERIES = Counter(
    "kiln_gateway_subscription_deliveries_total", "HTTP subscription deliveries", ["outcome"]
)


def exposition() -> bytes:
    """The text format of every metric: this process's, or the sum over all workers."""
    # The same switch prometheus_client reads at import to store values in files.
    if os.environ.get(METRICS_DIR_VARIABLE):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
