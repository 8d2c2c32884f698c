"""Pure projection: a batch of envelopes -> the rows they stand for in the `log_*` tables.

No I/O here (unit-tested as is); `history_writer` turns the result into upserts. Child rows are
keyed on their tables' natural unique keys. Run-row facts are merged per build in Python first,
so a batch of 200 events touches each build's run row once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.db.models import MANIFEST_PLATFORM
from shared.events import (
    AuditCompleted,
    BuildFinished,
    BuildRequested,
    BuildWaiting,
    CompileCompleted,
    Envelope,
    Event,
    ImageFailed,
    ImagePushed,
    ManifestPushed,
    RollbackRequested,
    ScanCompleted,
    StageFinished,
    StageStarted,
)

TERMINAL_BUILD = ("succeeded", "failed", "cancelled")
RUN_FIELDS = [
    "build_number",
    "version",
    "repo_url",
    "ref",
    "commit_sha",
    "trigger_kind",
    "trigger_actor",
    "platforms",
    "options",
    "host_arch",
    "host_os",
    "requested_at",
    "started_at",
    "finished_at",
    "duration_ms",
    "failed_stage",
    "error",
    "replay_of",
    "waiting_on",
]


@dataclass
class Projection:
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    compiles: list[dict[str, Any]] = field(default_factory=list)
    compile_sets: list[dict[str, Any]] = field(default_factory=list)
    scans: list[dict[str, Any]] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)

    def run(self, envelope: Envelope) -> dict[str, Any]:
        """The run row of this event's build, created on first sight (an unknown build is kept)."""
        row = self.runs.get(envelope.buildid)
        if row is None:
            row = {"build_id": envelope.buildid, "package": "", "status": "queued", "attempt": 1}
            row.update(dict.fromkeys(RUN_FIELDS))
            self.runs[envelope.buildid] = row
        if envelope.package and not row["package"]:
            row["package"] = envelope.package
        return row


def _reopens(run: dict[str, Any], env: Envelope) -> bool:
    """A stage of a newer attempt than the run has seen (a replay's) makes a finished run
    `running` again until that attempt's build.finished."""
    return env.attempt > run["attempt"] and run["status"] in TERMINAL_BUILD


def project(envelopes: list[Envelope]) -> Projection:
    """Envelopes in any order; they are applied in event-time order."""
    projection = Projection()
    for envelope in sorted(envelopes, key=lambda e: e.time):
        _apply(projection, envelope, envelope.event())
    return projection


def _apply(p: Projection, env: Envelope, event: Event) -> None:
    run = p.run(env)
    when = _naive(env.time)
    _host_from_extensions(run, env)
    if isinstance(event, (StageStarted, StageFinished, BuildFinished)):
        # The attempt the run's status is of: a republished trigger alone (a replay's first
        # event) changes nothing until the stage it starts reports.
        if _reopens(run, env):
            run["status"] = "running"
        run["attempt"] = max(run["attempt"], env.attempt)
    if isinstance(event, BuildRequested | BuildWaiting):
        run.update(
            _requested(event, run, when),
            # Held by its concurrency group: the build it waits behind; "" once released (final:
            # history_writer keeps "" against a late build.waiting).
            waiting_on=_waiting_on(event) if isinstance(event, BuildWaiting) else "",
        )
    elif isinstance(event, RollbackRequested):
        # A run of its own that redeploys an earlier build: shown as "rollback to #N".
        fields = _requested(event, run, when)
        fields["options"] |= {"rollback_to": event.to_number, "rollback_to_build": event.to_build_id}
        run.update(fields)
    elif isinstance(event, StageStarted):
        if run["status"] == "queued":
            run["status"] = "running"
        run["started_at"] = min(filter(None, (run["started_at"], when)))
        p.steps.append(_step(env, event, status="started", started_at=when))
    elif isinstance(event, StageFinished):
        if run["status"] == "queued":
            run["status"] = "running"
        _host_from_detail(run, event.detail)
        p.steps.append(
            _step(
                env,
                event,
                status=event.status,
                finished_at=when,
                duration_ms=event.duration_ms,
                detail=event.detail or None,
                error=event.error,
                log_tail=list(event.log_tail) or None,
            )
        )
    elif isinstance(event, BuildFinished):
        run.update(
            status=event.status,
            finished_at=when,
            duration_ms=event.duration_ms,
            failed_stage=event.failed_stage,
            error=event.error,
        )
    elif isinstance(event, CompileCompleted):
        _project_compile(p, env, event)
    elif isinstance(event, ImagePushed | ImageFailed | ManifestPushed):
        p.images.append(_image(env, event, when))
    elif isinstance(event, ScanCompleted):
        p.scans.append(_scan(env, event, when))
    elif isinstance(event, AuditCompleted):
        p.audits.append(
            {
                "event_id": env.id,
                "build_id": env.buildid,
                "mode": event.mode,
                "target": event.target[:255],
                "counts": dict(event.counts),
                "findings": [f.model_dump(mode="json") for f in event.findings],
                "note": event.note or None,
                "created_at": when,
                "image": event.image,
                "platform": event.platform,
                "digest": event.digest,
                "verdict": event.verdict if event.image else None,
            }
        )


def _waiting_on(event: BuildWaiting) -> str:
    number = f" (#{event.waiting_on_number})" if event.waiting_on_number is not None else ""
    return f"waiting for a slot (limit {event.limit}) behind build {event.waiting_on}{number}"[:255]


def _step(env: Envelope, event: StageStarted | StageFinished, **values: Any) -> dict[str, Any]:
    row = {
        "build_id": env.buildid,
        "stage": event.stage,
        "target": event.target or "",
        "platform": event.platform or "",
        "service": env.source.removeprefix("/kiln/") or None,
        "attempt": env.attempt,
        "started_at": None,
        "finished_at": None,
        "duration_ms": None,
        "detail": None,
        "error": None,
        "log_tail": None,
    }
    row.update(values)
    return row


def _project_compile(p: Projection, env: Envelope, event: CompileCompleted) -> None:
    for module in event.modules:
        p.compiles.append(
            {
                "build_id": env.buildid,
                "platform": module.platform,
                "module": module.module,
                "factory": module.factory,
                "status": module.status,
                "duration_ms": module.duration_ms,
                "error": module.error,
                "file": module.file,
                "line": module.line,
            }
        )
    for timing in event.sets:
        p.compile_sets.append({"build_id": env.buildid, **timing.model_dump(mode="json")})


def _image(
    env: Envelope, event: ImagePushed | ImageFailed | ManifestPushed, when: datetime
) -> dict[str, Any]:
    row = {"build_id": env.buildid, "target": event.target, "pushed_at": when, "error": None}
    if isinstance(event, ImageFailed):
        error = _error_with_tail(event.error, event.log_tail)
        return {**row, "platform": event.platform, "repository": "", "tag": "", "digest": None,
                "size_bytes": None, "status": "failed", "error": error, "pushed_at": None}  # fmt: skip
    platform = event.platform if isinstance(event, ImagePushed) else MANIFEST_PLATFORM
    size = event.size_bytes if isinstance(event, ImagePushed) else None
    status = "pushed" if isinstance(event, ImagePushed) else "manifest"
    return {**row, "platform": platform, "repository": event.repository, "tag": event.tag,
            "digest": event.digest, "size_bytes": size, "status": status}  # fmt: skip


def _scan(env: Envelope, event: ScanCompleted, when: datetime) -> dict[str, Any]:
    counts = {k.upper(): v for k, v in event.counts.items()}
    return {
        "build_id": env.buildid,
        "target": event.target,
        "platform": event.platform,
        "digest": event.digest,
        "scanner": event.scanner,
        **{sev.lower(): counts.get(sev, 0) for sev in ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN")},
        "secrets": len(event.secrets),
        "verdict": event.verdict,
        "vuln_db": event.vuln_db,
        "findings": [f.model_dump(mode="json") for f in (*event.findings, *event.secrets)],
        "scanned_at": when,
        "note": event.note or None,
    }


def _requested(
    event: BuildRequested | BuildWaiting | RollbackRequested, run: dict[str, Any], when: datetime
) -> dict[str, Any]:
    """The run row's fields from the event that asked for the run (a build or a rollback)."""
    return {
        "package": event.package or run["package"],
        "build_number": event.build_number,
        "version": event.version,
        "repo_url": event.source.repo_url or None,
        "ref": event.source.ref or None,
        "commit_sha": event.source.commit or None,
        "trigger_kind": event.trigger.kind,
        "trigger_actor": event.trigger.actor or None,
        "platforms": list(event.options.platforms),
        "options": event.options.model_dump(mode="json"),
        "requested_at": when,
    }


def _host_from_detail(run: dict[str, Any], detail: dict[str, Any]) -> None:
    """The build host is reported by the stage that ran on it: `detail.host_arch` / `detail.host_os`;
    the version by stage config when the branch's name alone did not decide it (`detail.version`:
    the version of the branch it forked from)."""
    for key in ("host_arch", "host_os"):
        if detail.get(key) and not run[key]:
            run[key] = str(detail[key])[:100]
    if detail.get("version") and not run["version"]:
        run["version"] = str(detail["version"])[:50]


def _host_from_extensions(run: dict[str, Any], env: Envelope) -> None:
    extra = env.model_extra or {}
    for key, attribute in (("host_arch", "hostarch"), ("host_os", "hostos")):
        if extra.get(attribute) and not run[key]:
            run[key] = str(extra[attribute])[:100]


def _error_with_tail(error: str | None, tail: tuple[str, ...]) -> str | None:
    if not tail:
        return error
    return (error or "") + "\n--- last log lines ---\n" + "\n".join(tail)


def _naive(moment: datetime) -> datetime:
    """MariaDB DATETIME has no zone: Kiln stores UTC."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)
