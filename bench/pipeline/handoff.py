"""Stage hand-off latency from event timestamps: how long work waits between one stage's event and
the next stage starting on it, counted only while the consumer was free (queueing behind another
job of the same worker is throughput, not hand-off).

    python bench/pipeline/handoff.py [--database-url URL] [--builds N]

Pairs measured (cause → the consumer's stage.started):
    build.requested            → compiler   stage.started config
    image.requested.<arch>     → imager     stage.started image (target, platform)
    image.pushed               → scanner    stage.started scan  (target, platform)
    last gate fact             → deployer   stage.started deploy (the last stage.finished of a
                                            shared.stages.GATE_FACTS stage, or image.pushed)
and, for the reporter, an event's own time → its `received_at` in event_log.
Times are the services' own envelope timestamps on one host's clock.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from datetime import datetime

from sqlalchemy import select

from shared.db import make_engine, make_sessions
from shared.db.models import BuildRun, EventLog
from shared.stages import GATE_FACTS


def load(sessions, builds: int) -> dict[str, list[dict]]:
    with sessions() as s:
        ids = s.scalars(
            select(BuildRun.build_id)
            .where(BuildRun.status == "succeeded")
            .order_by(BuildRun.id.desc())
            .limit(builds)
        ).all()
        rows = s.execute(
            select(EventLog.build_id, EventLog.routing_key, EventLog.body, EventLog.received_at).where(
                EventLog.build_id.in_(ids)
            )
        ).all()
    per_build: dict[str, list[dict]] = defaultdict(list)
    for build_id, key, body, received in rows:
        event = json.loads(body)
        event["_key"], event["_t"], event["_received"] = key, _time(event["time"]), received
        per_build[build_id].append(event)
    return per_build


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


def handoffs(events: list[dict]) -> dict[str, list[float]]:
    events.sort(key=lambda e: e["_t"])
    out: dict[str, list[float]] = defaultdict(list)

    def starts(stage, target=None, platform=None):
        return [
            e
            for e in events
            if e["_key"] == "stage.started"
            and e["data"]["stage"] == stage
            and (target is None or e["data"].get("target") == target)
            and (platform is None or e["data"].get("platform") == platform)
        ]

    def finishes(stages, platform):
        return sorted(
            e["_t"]
            for e in events
            if e["_key"] == "stage.finished"
            and e["data"]["stage"] in stages
            and e["data"].get("platform") == platform
        )

    def since_free(cause, start, busy_until):
        ready = max([cause] + [t for t in busy_until if t <= start])
        return (start - ready).total_seconds() * 1000

    requested = [e for e in events if e["_key"] == "build.requested"]
    config = starts("config")
    if requested and config:
        out["build.requested → compiler"].append(
            (config[0]["_t"] - requested[0]["_t"]).total_seconds() * 1000
        )
    for e in events:
        data = e["data"]
        if e["_key"].startswith("image.requested."):
            for start in starts("image", data["target"], data["platform"])[:1]:
                busy = finishes({"push", "image"}, data["platform"])
                out["image.requested → imager"].append(since_free(e["_t"], start["_t"], busy))
        if e["_key"] == "image.pushed":
            for start in starts("scan", data["target"], data["platform"])[:1]:
                busy = sorted(
                    x["_t"] for x in events if x["_key"] == "stage.finished" and x["data"]["stage"] == "scan"
                )
                out["image.pushed → scanner"].append(since_free(e["_t"], start["_t"], busy))
    facts = [
        e["_t"]
        for e in events
        if e["_key"] == "image.pushed"
        # per image only: a multi-arch index's attest row (no platform) is not a gate fact
        or (
            e["_key"] == "stage.finished"
            and e["data"].get("stage") in GATE_FACTS
            and e["data"].get("platform")
        )
    ]
    deploy = starts("deploy")
    if facts and deploy:
        out["last gate fact → deployer"].append((deploy[0]["_t"] - max(facts)).total_seconds() * 1000)
    out["any event → reporter (batched)"] += [
        (e["_received"] - e["_t"]).total_seconds() * 1000 for e in events
    ]
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default="mysql+pymysql://root@127.0.0.1:3306/kiln")
    parser.add_argument("--builds", type=int, default=10)
    args = parser.parse_args()
    engine = make_engine(args.database_url)
    totals: dict[str, list[float]] = defaultdict(list)
    per_build = load(make_sessions(engine), args.builds)
    for events in per_build.values():
        for name, values in handoffs(events).items():
            totals[name] += values
    print(f"{len(per_build)} succeeded builds")
    print(f"{'hand-off':36} {'n':>5} {'p50 ms':>8} {'p99 ms':>8}")
    stage_handoffs = []
    for name, values in totals.items():
        print(f"{name:36} {len(values):5} {statistics.median(values):8.1f} {pct(values, 0.99):8.1f}")
        if "reporter" not in name:
            stage_handoffs += values
    if stage_handoffs:
        print(
            f"{'all stage hand-offs':36} {len(stage_handoffs):5} {statistics.median(stage_handoffs):8.1f} "
            f"{pct(stage_handoffs, 0.99):8.1f}   (targets: p50 <= 20, p99 <= 100)"
        )


if __name__ == "__main__":
    main()
