"""Service `monitor` (tier minimal): GET /metrics in the Prometheus text format.
Run: python3 -m telemetry.server"""

from __future__ import annotations

import time

from core.checks import Check
from httpapi.server import Request, Response
from httpapi.service import run_service
from telemetry.metrics import Registry, percentile

SERVICE = "monitor"
PORT = 8086
REGISTRY = Registry()
STARTED = time.time()


def metrics(_request: Request) -> Response:
    started = time.perf_counter()
    REGISTRY.count("monitor_scrapes")
    body = REGISTRY.exposition() + f"monitor_uptime_seconds {time.time() - STARTED:.0f}\n"
    REGISTRY.observe("monitor_scrape", time.perf_counter() - started)
    return Response(200, body.encode(), "text/plain; version=0.0.4")


def self_checks() -> list[Check]:
    sample = Registry()
    sample.count("jobs", 2)
    return [
        Check("telemetry.percentile p90", lambda: percentile([float(i) for i in range(1, 11)], 0.9), 9.0),
        Check("telemetry.exposition", lambda: sample.exposition().splitlines()[0], "jobs_total 2"),
        Check("monitor /metrics", lambda: metrics(Request("GET", "/metrics", {})).status, 200),
    ]


def main() -> int:
    return run_service(SERVICE, default_port=PORT, checks=self_checks, routes={("GET", "/metrics"): metrics})


if __name__ == "__main__":
    raise SystemExit(main())
