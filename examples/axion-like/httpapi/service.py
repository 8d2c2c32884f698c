"""The main loop every service shares: serve health and routes, optionally tick, stop on SIGTERM."""

from __future__ import annotations

from collections.abc import Callable

from core.checks import Check
from core.config import load_service_config, service_port
from core.lifecycle import StopFlag, log
from httpapi.server import Handler, ServiceServer


def run_service(
    service: str,
    *,
    default_port: int,
    checks: Callable[[], list[Check]],
    routes: dict[tuple[str, str], Handler] | None = None,
    tick: Callable[[], object] | None = None,
    every_s: float = 5.0,
) -> int:
    """Workers pass `tick` (their work, every `every_s`); their port only serves health."""
    stop = StopFlag()
    config = load_service_config()
    server = ServiceServer(service, service_port(config, service, default_port), checks, routes or {})
    server.start()
    log(service, f"serving on :{server.port} for package {config.get('package', '?')}")
    while not stop.wait(every_s):
        if tick is None:
            continue
        try:
            tick()
        except Exception as exc:  # one bad round must not end the worker
            log(service, f"tick failed: {type(exc).__name__}: {exc}")
    server.stop()
    log(service, "stopped on signal")
    return 0
