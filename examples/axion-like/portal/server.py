"""Service `web` (tier web): GET / lists the package's services as an HTML page.
Run: python3 -m portal.server"""

from __future__ import annotations

from core.checks import Check
from core.config import load_service_config
from httpapi.server import Request, Response, json_response
from httpapi.service import run_service
from rendering.pages import render_table

SERVICE = "web"
PORT = 8080


def service_rows(config: dict) -> list[dict]:
    return [
        {"service": name, "port": svc.get("port") or "-", "enabled": svc.get("enabled", True)}
        for name, svc in sorted(config.get("services", {}).items())
    ]


def index(_request: Request) -> Response:
    config = load_service_config()
    page = render_table(f"Services of {config.get('package', 'this package')}", service_rows(config))
    return Response(200, page.encode(), "text/html; charset=utf-8")


def services(_request: Request) -> Response:
    return json_response(200, {"services": service_rows(load_service_config())})


def self_checks() -> list[Check]:
    sample = {"services": {"web": {"port": 8080}, "sms": {"enabled": False}}}
    return [
        Check("portal rows", lambda: [r["service"] for r in service_rows(sample)], ["sms", "web"]),
        Check("rendering.pages page", lambda: index(Request("GET", "/", {})).status, 200),
        Check("rendering.pages escapes", lambda: "<x>" in render_table("<x>", []), False),
    ]


def main() -> int:
    return run_service(
        SERVICE,
        default_port=PORT,
        checks=self_checks,
        routes={("GET", "/"): index, ("GET", "/api/services"): services},
    )


if __name__ == "__main__":
    raise SystemExit(main())
