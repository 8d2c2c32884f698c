"""Writes one batch of envelopes in one transaction: event_log + idempotent projections.

The tables written here, and what each reader relies on in them, are documented in
shared.history.read_model: the contract between this writer and the gateway and other readers.

Every statement is an upsert on the table's natural unique key (or INSERT IGNORE), so
replaying a stream, or a batch redelivered after a crash between commit and ack, changes
nothing. MariaDB evaluates `ON DUPLICATE KEY UPDATE` assignments left to right, each seeing the
columns already updated: the order of the assignment lists below is part of the logic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, and_, case, func, literal_column, or_, select
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.orm import Session

from services.reporter.projection import RUN_FIELDS, TERMINAL_BUILD, Projection, project
from shared.db.models import (
    Audit,
    BuildCompile,
    BuildCompileSet,
    BuildImage,
    BuildRun,
    BuildScan,
    BuildStep,
    EventLog,
)
from shared.events import Envelope


def write_batch(session: Session, envelopes: list[Envelope]) -> int:
    """Store and project; returns how many events were new. Commits."""
    unique = list({e.id: e for e in envelopes}.values())
    ids = [e.id for e in unique]
    known = set(session.scalars(select(EventLog.event_id).where(EventLog.event_id.in_(ids))))
    fresh = [e for e in unique if e.id not in known]
    if fresh:
        received = datetime.now(UTC).replace(tzinfo=None)
        # Core, not the ORM bulk path: one executemany (one multi-row INSERT) per table and batch.
        connection = session.connection()
        connection.execute(
            insert(EventLog.__table__).prefix_with("IGNORE"), [_log_row(e, received) for e in fresh]
        )
        _write_projection(connection, project(fresh))
    session.commit()
    return len(fresh)


def _log_row(envelope: Envelope, received: datetime) -> dict[str, Any]:
    return {
        "event_id": envelope.id,
        "type": envelope.type,
        "routing_key": envelope.routing_key(),
        "source": envelope.source,
        "build_id": envelope.buildid,
        "package": envelope.package or None,
        "time": envelope.time.astimezone(UTC).replace(tzinfo=None),
        "attempt": envelope.attempt,
        "replay_of": envelope.replayof,
        "body": envelope.to_json().decode(),
        "received_at": received,
        # Projected in this same transaction: the flag exists for projections added later.
        "projected": True,
    }


def _write_projection(connection: Connection, p: Projection) -> None:
    if p.runs:
        connection.execute(_run_upsert(), list(p.runs.values()))
    if p.steps:
        connection.execute(_step_upsert(), p.steps)
    for table, rows in (
        (BuildCompile, p.compiles),
        (BuildCompileSet, p.compile_sets),
        (BuildScan, p.scans),
        (BuildImage, p.images),
    ):
        if rows:
            connection.execute(_replace_upsert(table, tuple(rows[0])), rows)
    if p.audits:
        connection.execute(insert(Audit.__table__).prefix_with("IGNORE"), p.audits)


@cache
def _replace_upsert(table: type, columns: tuple[str, ...]) -> Any:
    stmt = insert(table.__table__)
    keys = {"build_id", "target", "platform", "module", "factory"}
    return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in columns if c not in keys})


def _const(*values: str) -> Any:
    """Inline SQL string constants: PyMySQL's executemany cannot bind parameters after VALUES."""
    rendered = [literal_column(f"'{v}'") for v in values]
    return rendered[0] if len(values) == 1 else rendered


def _value(new_column: Any, name: str) -> Any:
    """The inserted value, with JSON `null` (how SQLAlchemy binds None to a JSON column) as NULL."""
    if name in JSON_COLUMNS:
        return func.nullif(new_column, _const("null"))
    return new_column


JSON_COLUMNS = {"platforms", "options", "detail", "log_tail"}


@cache
def _run_upsert() -> Any:
    stmt = insert(BuildRun.__table__)
    new, old = stmt.inserted, BuildRun.__table__.c
    # A newer build.finished (a replayed stage finishing again) wins; otherwise terminal sticks.
    newer_finish = and_(
        new.status.in_(_const(*TERMINAL_BUILD)),
        or_(old.finished_at.is_(None), new.finished_at >= old.finished_at),
    )
    status = case(
        (newer_finish, new.status),
        # A replay's attempt started: the run is running again until that attempt finishes.
        (and_(new.attempt > old.attempt, new.status == _const("running")), new.status),
        (old.status.in_(_const(*TERMINAL_BUILD)), old.status),
        (new.status == _const("running"), new.status),
        else_=old.status,
    )
    earliest_start = case(
        (old.started_at.is_(None), new.started_at),
        (new.started_at.is_(None), old.started_at),
        else_=func.least(old.started_at, new.started_at),
    )
    assignments: list[tuple[str, Any]] = [
        ("status", status),
        ("package", func.coalesce(func.nullif(new.package, _const("")), old.package)),
        ("started_at", earliest_start),
    ]
    finish_fields = {"finished_at", "duration_ms", "failed_stage", "error"}
    for name in RUN_FIELDS:
        if name == "started_at":
            continue
        if name == "waiting_on":
            # "" (released to the pipeline) is final: a late or redelivered build.waiting keeps it.
            released = old.waiting_on == _const("")
            assignments.append(
                (name, case((released, old.waiting_on), else_=func.coalesce(new[name], old[name])))
            )
        elif name in finish_fields:
            # All four come from one build.finished: take the newest one's together.
            assignments.append((name, case((newer_finish, new[name]), else_=old[name])))
        else:
            assignments.append((name, func.coalesce(_value(new[name], name), old[name])))
    # finished_at must be compared before it is overwritten: it is last among the finish fields.
    assignments.sort(key=lambda a: a[0] == "finished_at")
    assignments.append(("attempt", func.greatest(old.attempt, new.attempt)))  # last: status compares it
    return stmt.on_duplicate_key_update(assignments)


@cache
def _step_upsert() -> Any:
    """One row per (build, stage, target, platform, attempt): redeliveries and out-of-order
    events of one attempt merge into it; a replay's attempt writes rows of its own."""
    stmt = insert(BuildStep.__table__)
    new, old = stmt.inserted, BuildStep.__table__.c
    status = case(
        # A late `started` never undoes a `finished` of the same attempt.
        (and_(new.status == _const("started"), old.status != _const("started")), old.status),
        else_=new.status,
    )
    assignments: list[tuple[str, Any]] = [
        ("status", status),
        ("started_at", func.coalesce(old.started_at, new.started_at)),
    ]
    for column in ("finished_at", "duration_ms", "detail", "error", "log_tail"):
        assignments.append((column, func.coalesce(_value(new[column], column), old[column])))
    assignments.append(("service", func.coalesce(new.service, old.service)))
    return stmt.on_duplicate_key_update(assignments)
