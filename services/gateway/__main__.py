"""`python -m services.gateway [--host H] [--port P] [--workers N]`: serve the gateway with uvicorn."""

from __future__ import annotations

import argparse
import os
from typing import Any

import uvicorn

from services.gateway.bootstrap import bootstrap
from services.gateway.settings import GatewaySettings
from services.gateway.workers import available_cpus, worker_environment
from shared.logging import setup_logging
from shared.settings import load_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.gateway", description=__doc__)
    parser.add_argument("--host", help="listen address (default KILN_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default KILN_PORT or 8000)")
    parser.add_argument(
        "--workers", type=int, help="worker processes (default KILN_WORKERS, else one per CPU)"
    )
    args = parser.parse_args(argv)
    settings = load_settings(GatewaySettings)
    setup_logging(settings.log_level, fmt=settings.log_format, secrets=settings.secret_values().values())
    if args.host:
        # The listen address decides whether reads need the token (settings.reads_require_token),
        # in this process and in the worker processes, which read their settings themselves.
        settings = settings.model_copy(update={"host": args.host})
        os.environ["KILN_HOST"] = args.host
    workers = args.workers or settings.workers or available_cpus()
    if workers < 1:
        parser.error("--workers must be at least 1")
    serve: dict[str, Any] = {
        "host": settings.host,
        "port": args.port or settings.port,
        "log_config": None,  # keep our redacting handler
        "proxy_headers": True,
        # Open SSE streams never finish by themselves; do not wait for them forever on SIGTERM.
        "timeout_graceful_shutdown": 5,
    }
    if workers == 1:
        uvicorn.run(bootstrap(settings), **serve)
        return
    with worker_environment():
        uvicorn.run("services.gateway.bootstrap:worker_app", factory=True, workers=workers, **serve)


if __name__ == "__main__":
    main()
