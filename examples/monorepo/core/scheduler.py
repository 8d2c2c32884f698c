"""Service `scheduler`: fires interval jobs until SIGTERM. Run: python3 -m core.scheduler"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from core.runtime import StopFlag, load_service_config, log

SERVICE = "scheduler"


@dataclass(order=True)
class Job:
    due: float
    name: str = field(compare=False)
    every: float = field(compare=False)


def plan(jobs: dict[str, float], start: float, until: float) -> list[tuple[float, str]]:
    """Every (time, job) firing in [start, until), in time order; jobs map name -> interval."""
    queue = [Job(start + every, name, every) for name, every in jobs.items() if every > 0]
    heapq.heapify(queue)
    fired = []
    while queue and queue[0].due < until:
        job = heapq.heappop(queue)
        fired.append((job.due, job.name))
        heapq.heappush(queue, Job(job.due + job.every, job.name, job.every))
    return fired


def main() -> int:
    stop = StopFlag()
    config = load_service_config()
    log(SERVICE, f"started for package {config.get('package', '?')}")
    jobs = {"heartbeat": 30.0}
    tick = 0.0
    while not stop.wait(1.0):
        tick += 1.0
        for _, name in plan(jobs, tick - 1.0, tick):
            log(SERVICE, f"job {name} fired")
    log(SERVICE, "stopping on signal")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
