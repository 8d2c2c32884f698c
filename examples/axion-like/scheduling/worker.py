"""Service `scheduler` (tier minimal, port 9103 for health only): publishes each job when its cron
expression comes due. Run: python3 -m scheduling.worker"""

from __future__ import annotations

from datetime import datetime

from core.checks import Check
from core.lifecycle import log
from httpapi.service import run_service
from messaging.bus import Bus
from scheduling.cron import next_fire

SERVICE = "scheduler"
PORT = 9103
JOBS = {"reports.daily": "0 6 * * *", "imports.poll": "*/5 * * * *", "heartbeat": "* * * * *"}


class Scheduler:
    def __init__(self, bus: Bus, now: datetime) -> None:
        self.bus = bus
        self.due = {name: next_fire(expr, now) for name, expr in JOBS.items()}

    def tick(self, now: datetime | None = None) -> list[str]:
        now = now or datetime.now()
        fired = sorted(name for name, when in self.due.items() if when <= now)
        for name in fired:
            self.bus.publish(f"schedule.{name}", {"due": self.due[name].isoformat()})
            self.due[name] = next_fire(JOBS[name], now)
            log(SERVICE, f"job {name} fired; next at {self.due[name]:%Y-%m-%d %H:%M}")
        return fired


def self_checks() -> list[Check]:
    start = datetime(2024, 3, 1, 5, 58, 30)
    return [
        Check(
            "scheduling.cron daily", lambda: next_fire("0 6 * * *", start).isoformat(), "2024-03-01T06:00:00"
        ),
        Check("scheduling.cron sunday", lambda: next_fire("0 0 * * 0", start).day, 3),
        Check(
            "scheduler fires due jobs",
            lambda: Scheduler(Bus(), start).tick(datetime(2024, 3, 1, 6, 0)),
            ["heartbeat", "imports.poll", "reports.daily"],
        ),
    ]


def main() -> int:
    scheduler = Scheduler(Bus(), datetime.now())
    return run_service(SERVICE, default_port=PORT, checks=self_checks, tick=scheduler.tick, every_s=15.0)


if __name__ == "__main__":
    raise SystemExit(main())
