"""Every build ends: a build whose current stage has been silent past its deadline is ended.

A worker that died with a message in hand, a stalled QEMU run, a queue nobody consumes: each
leaves a build `running` forever, and a user waiting on `kiln pipeline` waits forever. The
reporter holds the history of every build, so it watches: every `KILN_WATCHDOG_INTERVAL_S` it
reads the open builds' steps and ends each overdue one with `build.finished failed: timed out
in <stage> after <n> s …, waiting on <queue>`. A stage that runs is overdue past its spec's
`deadline_s` (shared.stages), unless the operator sets `KILN_WATCHDOG_DEADLINES`; a stage that has
not started is overdue once the build has been silent for `KILN_WATCHDOG_QUEUE_WAIT_S` (an hour:
builds legitimately queue behind others, and a queue wait is not a stalled run). A build held by
its concurrency group (build.waiting, services/gateway/concurrency.py) is not judged at all until
its build.requested: its wait is the running build's, which has its own deadlines.

The decision (`overdue`) is pure; `Watchdog.sweep` reads the rows and publishes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.bus.topology import queue_name
from shared.db.models import BuildRun, BuildStep
from shared.events import BuildFinished
from shared.platforms import arch_of
from shared.stages import ARCH, ROLLBACK_REQUESTED, STAGE_ORDER, STAGES, StageSpec

log = logging.getLogger("kiln.reporter.watchdog")

OPEN = ("queued", "running")
# A step's status while its stage runs (services/reporter/projection.py writes stage.started so).
RUNNING_STEP = "started"
QUEUE_WAIT_S = 3600  # how long a build may wait for its next stage to start (KILN_WATCHDOG_QUEUE_WAIT_S)
# The same id for every sweep (and every reporter replica) that ends one attempt of a build:
# the history keeps one build.finished, whoever published it first.
WATCHDOG_NAMESPACE = uuid.UUID("6b1f3c2e-9a57-4f0e-8d4c-1f2a3b4c5d6e")


@dataclass(frozen=True)
class Step:
    stage: str
    target: str
    platform: str
    status: str
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


@dataclass(frozen=True)
class OpenBuild:
    build_id: str
    package: str
    attempt: int
    requested_at: dt.datetime
    platforms: tuple[str, ...]
    steps: tuple[Step, ...]
    # A run that starts later in the pipeline (a rollback run starts at deploy): the stages
    # before this one never run in it and are not waited on.
    starts_at: str | None = None


@dataclass(frozen=True)
class TimedOut:
    build_id: str
    package: str
    attempt: int
    stage: str
    where: str  # "webhook linux/arm64", or "" for a build-wide stage
    silent_s: int
    deadline_s: int
    queue: str
    elapsed_s: int = 0  # since the build was requested
    started: bool = True  # False: the stage never started (nothing took it from the queue)

    @property
    def error(self) -> str:
        where = f" ({self.where})" if self.where else ""
        if self.started:
            why = f"(deadline {self.deadline_s} s), its worker silent"
        else:
            why = f"not started (queue wait limit {self.deadline_s} s)"
        return f"timed out in {self.stage}{where} after {self.silent_s} s {why}, waiting on {self.queue}"


def deadlines(overrides: Mapping[str, int], stages: Sequence[StageSpec] = STAGES) -> dict[str, int]:
    """Each stage's deadline: the spec's, or the operator's override; unknown names refused."""
    unknown = sorted(set(overrides) - {spec.name for spec in stages})
    if unknown:
        raise ValueError(f"KILN_WATCHDOG_DEADLINES names no stage: {', '.join(unknown)}")
    return {spec.name: int(overrides.get(spec.name, spec.deadline_s)) for spec in stages}


def overdue(
    build: OpenBuild,
    now: dt.datetime,
    limits: Mapping[str, int],
    stages: Sequence[StageSpec] = STAGES,
    *,
    queue_wait_s: int = QUEUE_WAIT_S,
) -> TimedOut | None:
    """The stage `build` waits on, if it has been silent past its deadline (a running stage) or
    past `queue_wait_s` (a stage that has not started)."""
    specs = {spec.name: spec for spec in stages}
    running = sorted((s for s in build.steps if s.status == RUNNING_STEP), key=lambda s: _time(s.started_at))
    if running:
        # A run of a stage that outlives its deadline: the worker holding it is stuck or gone.
        step = running[0]
        spec, since = specs.get(step.stage), _time(step.started_at)
        if spec is None:
            return None
        platforms = (step.platform,) if step.platform else build.platforms
        where = " ".join(p for p in (step.target, step.platform) if p)
        limit = limits.get(spec.name, spec.deadline_s)
    else:
        # Between stages: nothing has started since the last thing finished.
        waiting = _next_stage(build, stages)
        if waiting is None:
            return None
        spec, platforms, where = waiting
        since = max((_time(t) for s in build.steps for t in (s.started_at, s.finished_at) if t), default=None)
        since = since or build.requested_at
        limit = queue_wait_s
    silent = (now - since).total_seconds()
    if silent <= limit:
        return None
    return TimedOut(
        build.build_id,
        build.package,
        build.attempt,
        spec.name,
        where,
        int(silent),
        limit,
        _queues(spec, platforms),
        elapsed_s=int((now - build.requested_at).total_seconds()),
        started=bool(running),
    )


def _next_stage(
    build: OpenBuild, stages: Sequence[StageSpec]
) -> tuple[StageSpec, tuple[str, ...], str] | None:
    """The first stage, in pipeline order, that has not run where it must: a build-wide stage
    with no row, or a per-image stage missing for an image the build makes. Stages that run only
    when a package asks for them (`optional`) are never waited on."""
    have = {(s.stage, s.target, s.platform) for s in build.steps}
    images = sorted({(s.target, s.platform) for s in build.steps if s.stage == "image"})
    failed_or_skipped = {(s.target, s.platform) for s in build.steps if s.status in ("failed", "skipped")}
    first = STAGE_ORDER.get(build.starts_at or "", 0)
    for spec in sorted(stages, key=lambda spec: STAGE_ORDER.get(spec.name, len(STAGE_ORDER))):
        if spec.optional or STAGE_ORDER.get(spec.name, len(STAGE_ORDER)) < first:
            continue
        if not spec.per_image:
            if not any(stage == spec.name for stage, _, _ in have):
                return spec, build.platforms, ""
            continue
        if not images:
            return spec, build.platforms, ""
        for target, platform in images:
            if (spec.name, target, platform) not in have and (target, platform) not in failed_or_skipped:
                return spec, (platform,), f"{target} {platform}"
    return None


def _queues(spec: StageSpec, platforms: Sequence[str]) -> str:
    if ARCH not in spec.queue:
        return queue_name(spec.service, spec.queue)
    archs = dict.fromkeys(arch_of(p) for p in platforms) or {"<arch>": None}
    return " or ".join(queue_name(spec.service, spec.queue.replace(ARCH, arch)) for arch in archs)


def _time(value: dt.datetime | None) -> dt.datetime:
    """History times are naive UTC (MySQL DATETIME)."""
    if value is None:
        return dt.datetime.min
    return value.replace(tzinfo=None)


def open_builds(session: Session) -> list[OpenBuild]:
    """Builds queued or running, but not those held by their concurrency group (`waiting_on`
    set by build.waiting): they wait on a build that has its own deadlines, however long that
    takes. Once released (build.requested) the queue wait counts from the release."""
    held = (BuildRun.waiting_on.is_not(None)) & (BuildRun.waiting_on != "")
    runs = session.scalars(select(BuildRun).where(BuildRun.status.in_(OPEN), ~held)).all()
    if not runs:
        return []
    ids = [run.build_id for run in runs]
    steps: dict[str, list[BuildStep]] = {}
    for row in session.scalars(select(BuildStep).where(BuildStep.build_id.in_(ids))):
        steps.setdefault(row.build_id, []).append(row)
    builds = []
    for run in runs:
        rows = steps.get(run.build_id, [])
        attempt = max((row.attempt or 1 for row in rows), default=1)
        builds.append(
            OpenBuild(
                build_id=run.build_id,
                package=run.package,
                attempt=attempt,
                requested_at=_time(run.requested_at or run.started_at),
                platforms=tuple(run.platforms or ()),
                starts_at=ROLLBACK_STAGE if run.trigger_kind == "rollback" else None,
                steps=tuple(
                    Step(r.stage, r.target, r.platform, r.status, r.started_at, r.finished_at)
                    for r in rows
                    if (r.attempt or 1) == attempt
                ),
            )
        )
    return builds


# The stage a rollback run (trigger kind `rollback`, rollback.requested) starts at: the one whose
# queue consumes the request (shared.stages: the deploy stage's also_consumes).
ROLLBACK_STAGE = next(spec.name for spec in STAGES if ROLLBACK_REQUESTED in spec.also_consumes)


# (event, build id, package, event id, attempt)
Publish = Callable[[BuildFinished, str, str, str, int], Awaitable[None]]


class Watchdog:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        limits: Mapping[str, int],
        interval_s: float,
        queue_wait_s: int = QUEUE_WAIT_S,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None),
    ) -> None:
        self.sessions = sessions
        self.limits = dict(limits)
        self.interval_s = interval_s
        self.queue_wait_s = queue_wait_s
        self.clock = clock
        self._ended: set[tuple[str, int]] = set()  # until the history shows them finished

    def find(self) -> list[TimedOut]:
        with self.sessions() as session:
            builds = open_builds(session)
        now = self.clock()
        return [
            t
            for b in builds
            if (t := overdue(b, now, self.limits, queue_wait_s=self.queue_wait_s)) is not None
        ]

    async def sweep(self, publish: Publish) -> list[TimedOut]:
        found = await asyncio.to_thread(self.find)
        ended = []
        for timeout in found:
            key = (timeout.build_id, timeout.attempt)
            if key in self._ended:
                continue
            event = BuildFinished(
                status="failed",
                duration_ms=timeout.elapsed_s * 1000,
                failed_stage=timeout.stage,
                error=timeout.error,
            )
            event_id = str(uuid.uuid5(WATCHDOG_NAMESPACE, f"{timeout.build_id}/{timeout.attempt}"))
            await publish(event, timeout.build_id, timeout.package, event_id, timeout.attempt)
            self._ended.add(key)
            log.warning("build %s: %s", timeout.build_id, timeout.error)
            ended.append(timeout)
        return ended

    async def run(self, publish: Publish) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sweep(publish)
            except Exception:  # a database or broker hiccup: the next sweep tries again
                log.exception("watchdog sweep failed; retrying in %.0f s", self.interval_s)
