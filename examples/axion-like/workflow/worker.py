"""Service `workflow` (tier minimal, port 9102 for health only): advances onboarding instances
kept in its record store (in volume shared_blobs when deployed).
Run: python3 -m workflow.worker"""

from __future__ import annotations

import itertools

from core.checks import Check
from core.config import writable_dir
from httpapi.service import run_service
from messaging.bus import Bus
from storage.records import RecordStore
from workflow.engine import ONBOARDING, Instance, advance, finished

SERVICE = "workflow"
PORT = 9102
SCRIPT = ("verified", "welcomed", "closed")


class Runner:
    def __init__(self, store: RecordStore, bus: Bus) -> None:
        self.store, self.bus = store, bus
        self.numbers = itertools.count(1)
        self.open: list[str] = []  # instances not finished yet: at most len(SCRIPT) at a time

    def tick(self) -> None:
        """Starts one instance and moves each open one a step, as its events would."""
        key = f"onboarding-{next(self.numbers)}"
        self.store.put("instance", key, {"state": "new", "history": []})
        self.open.append(key)
        for name in list(self.open):
            doc = self.store.get("instance", name)
            moved = advance(
                ONBOARDING, Instance(name, doc["state"], doc["history"]), SCRIPT[len(doc["history"])]
            )
            self.store.put("instance", name, {"state": moved.state, "history": moved.history})
            self.bus.publish(f"workflow.{moved.state}", {"key": name})
            if finished(ONBOARDING, moved):
                self.open.remove(name)


def self_checks() -> list[Check]:
    runner = Runner(RecordStore(), Bus())

    def three_rounds() -> str:
        for _ in range(3):
            runner.tick()
        return runner.store.get("instance", "onboarding-1")["state"]

    def refused() -> str:
        try:
            advance(ONBOARDING, Instance("x", "closed"), "welcomed")
        except ValueError:
            return "refused"
        return "accepted"

    return [
        Check("workflow.engine run", three_rounds, "closed"),
        Check("workflow.engine guard", refused, "refused"),
    ]


def main() -> int:
    store = RecordStore(writable_dir("WORKFLOW_DIR", "workflow") / "instances.sqlite")
    runner = Runner(store, Bus())
    return run_service(SERVICE, default_port=PORT, checks=self_checks, tick=runner.tick)


if __name__ == "__main__":
    raise SystemExit(main())
