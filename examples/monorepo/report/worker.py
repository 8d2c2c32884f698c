"""Service `report`: renders a report once, then stays alive until SIGTERM.
Run: python3 -m report.worker"""

from __future__ import annotations

from core.runtime import StopFlag, feature_enabled, load_service_config, log
from report.render import render_table

SERVICE = "report"


def build_report(config: dict) -> str:
    rows = [
        {"service": name, "enabled": svc.get("enabled", True), "port": svc.get("port") or "-"}
        for name, svc in sorted(config.get("services", {}).items())
    ]
    return render_table(f"Services of {config.get('package', 'unknown')}", rows)


def main() -> int:
    stop = StopFlag()
    config = load_service_config()
    if config and not feature_enabled(config, "reports", default=True):
        log(SERVICE, "feature 'reports' is off; idling")
    else:
        log(SERVICE, "\n" + build_report(config))
    while not stop.wait(5.0):
        pass
    log(SERVICE, "stopping on signal")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
