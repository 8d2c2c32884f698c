"""Prometheus metrics of the gateway (served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
