"""History on a real MariaDB: exact rows for a full build, replay changes nothing, any order,
unknown builds, and batching through a real RabbitMQ queue."""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from cli.commands import status
from services.gateway.dashboard.views import templates as dashboard_templates
from services.reporter.batching import BatchingIngestor
from services.reporter.history_writer import write_batch
from shared.bus import Bus
from shared.bus import topology as t
from shared.db.models import EventLog
from shared.events import CATALOGUE, BuildFinished, Envelope, StageFinished, StageStarted
from shared.history.queries import build_detail
from shared.report import render_html, render_text, report_view
from tests.unit.test_reporter_stream import PLATFORMS, TARGETS, full_build_stream

pytestmark = pytest.mark.integration

TABLES = (
    "log_build_run",
    "log_build_step",
    "log_build_compile",
    "log_build_compile_set",
    "log_build_scan",
    "log_build_image",
    "log_audit",
)


def snapshot(sessions, build_id: str) -> dict[str, list[tuple]]:
    """Every row of every table for one build, without surrogate ids, sorted."""
    out = {}
    with sessions() as session:
        for table in TABLES:
            rows = session.execute(text(f"SELECT * FROM {table} WHERE build_id = :b"), {"b": build_id})
            out[table] = sorted(tuple(v for k, v in r._mapping.items() if k != "id") for r in rows)
        log = session.execute(
            text("SELECT event_id, type, routing_key, build_id, time, body FROM event_log WHERE build_id=:b"),
            {"b": build_id},
        )
        out["event_log"] = sorted(tuple(r) for r in log)
    return out


def store(sessions, envelopes, batch=50):
    for i in range(0, len(envelopes), batch):
        with sessions() as session:
            write_batch(session, envelopes[i : i + batch])


def test_full_build_produces_the_exact_rows(sessions):
    build_id = str(uuid.uuid4())
    stream = full_build_stream(build_id)
    store(sessions, stream)
    rows = snapshot(sessions, build_id)
    with sessions() as session:
        run = session.execute(text("SELECT * FROM log_build_run WHERE build_id=:b"), {"b": build_id}).one()
    m = run._mapping
    assert (m["package"], m["build_number"], m["status"], m["version"]) == ("demo", 7, "succeeded", "axion")
    assert (m["ref"], m["commit_sha"], m["trigger_kind"], m["trigger_actor"]) == (
        "main",
        "c0ffee1",
        "github",
        "ana",
    )
    assert (m["host_arch"], m["host_os"]) == ("x86_64", "Linux 6.1 (Debian 12)")
    assert m["requested_at"] == datetime(2026, 11, 21, 9, 0, 0)
    assert m["started_at"] == datetime(2026, 11, 21, 9, 0, 1)  # the first stage.started
    assert m["finished_at"] == datetime(2026, 11, 21, 9, 0, len(stream) - 1)
    assert m["duration_ms"] == 60_000 and m["failed_stage"] is None and m["error"] is None
    # one step per stage, target and platform, all finished
    steps = {(r[1], r[2], r[3]): r[4] for r in rows["log_build_step"]}
    expected = {(s, "", "") for s in ("config", "keys", "compile", "deploy", "verify")}
    expected |= {("image", tg, p) for tg in TARGETS for p in PLATFORMS}
    assert set(steps) == expected and set(steps.values()) == {"succeeded"}
    assert len(rows["log_build_compile"]) == 6 and len(rows["log_build_compile_set"]) == 4
    images = {(r[1], r[2]): (r[6], r[7]) for r in rows["log_build_image"]}
    assert len(images) == 6 and images[("webhook", "multi-arch")][1] == "manifest"
    assert images[("webhook", "linux/amd64")] == (57_000_000, "pushed")
    scans = {(r[1], r[2]): (r[6], r[11]) for r in rows["log_build_scan"]}  # high, verdict
    assert scans == {(tg, p): (1, "pass") for tg in TARGETS for p in PLATFORMS}
    assert len(rows["log_audit"]) == 1 and len(rows["event_log"]) == len(stream)


def test_replaying_the_stream_changes_nothing(sessions):
    build_id = str(uuid.uuid4())
    stream = full_build_stream(build_id)
    store(sessions, stream)
    before = snapshot(sessions, build_id)
    store(sessions, stream, batch=7)
    store(sessions, list(reversed(stream)), batch=len(stream))
    assert snapshot(sessions, build_id) == before


def test_arrival_order_and_batch_boundaries_do_not_matter(sessions):
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    store(sessions, full_build_stream(a), batch=200)
    shuffled = full_build_stream(b)
    shuffled = shuffled[1::2] + shuffled[::2]  # build.requested arrives late, finished early
    store(sessions, list(reversed(shuffled)), batch=3)
    rows_a, rows_b = snapshot(sessions, a), snapshot(sessions, b)
    for table in TABLES:
        if table == "log_audit":  # keyed on event ids, which differ per build
            continue
        assert _strip(rows_a[table], a) == _strip(rows_b[table], b), table


def test_event_for_an_unknown_build_is_stored_then_completed(sessions):
    build_id = str(uuid.uuid4())
    stream = full_build_stream(build_id)
    store(sessions, [stream[-1]])  # build.finished before anything else
    with sessions() as session:
        status = session.execute(text("SELECT status, requested_at FROM log_build_run WHERE build_id=:b"),
                                 {"b": build_id}).one()  # fmt: skip
    assert status == ("succeeded", None)
    store(sessions, stream[:-1])
    with sessions() as session:
        row = session.execute(text("SELECT status, commit_sha FROM log_build_run WHERE build_id=:b"),
                              {"b": build_id}).one()  # fmt: skip
    assert row == ("succeeded", "c0ffee1")


async def test_history_consumer_batches_from_rabbitmq(amqp_url, sessions):
    build_ids = [str(uuid.uuid4()) for _ in range(5)]
    streams = [full_build_stream(b) for b in build_ids]
    ingestor = BatchingIngestor(lambda batch: _write(sessions, batch), max_batch=50, max_wait_ms=50)
    bus = await Bus(amqp_url, source="reporter").connect()
    try:
        await bus.consume(t.REPORTER_HISTORY, {model: ingestor.handle for model in CATALOGUE})
        for envelope in (e for s in streams for e in s):
            await bus.publish(envelope)
        total = sum(len(s) for s in streams)
        await _wait_for(lambda: _count(sessions, build_ids) == total)
        assert ingestor.batches < total / 2  # really batched
    finally:
        await bus.stop(grace_s=5)
        await ingestor.close()


def _strip(rows, build_id):
    """Without the build id and digests (derived from the build id), to compare two builds."""
    digest = lambda v: isinstance(v, str) and v.startswith("sha256:")  # noqa: E731
    return [tuple(v for v in row if v != build_id and not digest(v)) for row in rows]


def _write(sessions, batch):
    with sessions() as session:
        return write_batch(session, batch)


def _count(sessions, build_ids) -> int:
    with sessions() as session:
        return session.scalar(
            select(func.count()).select_from(EventLog).where(EventLog.build_id.in_(build_ids))
        )


async def _wait_for(predicate, timeout=30.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not await asyncio.to_thread(predicate):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


def test_a_replayed_attempt_reopens_the_run_and_keeps_every_attempts_steps(sessions):
    """`kiln replay --from deploy`: attempt 2's deploy gets rows of its own beside attempt 1's,
    the run is `running` again while attempt 2 runs, and ends as attempt 2 ended."""
    build_id = str(uuid.uuid4())
    first = full_build_stream(build_id)
    store(sessions, first)
    last = first[-1].time

    def attempt_two(event, seconds: int, source: str = "deployer") -> Envelope:
        envelope = Envelope.new(event, source=source, build_id=build_id, package="demo")
        return envelope.model_copy(update={"attempt": 2, "time": last + timedelta(seconds=seconds)})

    def run_row():
        with sessions() as session:
            return session.execute(
                text("SELECT status, attempt FROM log_build_run WHERE build_id=:b"), {"b": build_id}
            ).one()

    trigger = first[0].model_copy(
        update={"id": str(uuid.uuid4()), "attempt": 2, "time": last + timedelta(seconds=1)}
    )
    store(sessions, [trigger])  # the republished trigger alone changes nothing yet
    assert tuple(run_row()) == ("succeeded", 1)
    store(sessions, [attempt_two(StageStarted(stage="deploy"), 2)])
    assert tuple(run_row()) == ("running", 2)
    assert first[-1].routing_key() == "build.finished"
    store(sessions, [first[-1]])  # a late redelivery of attempt 1's end does not end attempt 2
    assert tuple(run_row()) == ("running", 2)
    store(
        sessions,
        [
            attempt_two(StageFinished(stage="deploy", status="failed", duration_ms=900, error="boom"), 3),
            attempt_two(
                BuildFinished(status="failed", duration_ms=3000, failed_stage="deploy", error="boom"), 4
            ),
        ],
    )
    assert tuple(run_row()) == ("failed", 2)
    with sessions() as session:
        deploys = session.execute(
            text("SELECT attempt, status FROM log_build_step WHERE build_id=:b AND stage='deploy'"),
            {"b": build_id},
        ).all()
        detail = build_detail(session, build_id)
    assert sorted(tuple(r) for r in deploys) == [(1, "succeeded"), (2, "failed")]
    current = {s["stage"]: (s["attempt"], s["status"]) for s in detail["steps"] if not s["target"]}
    assert current["deploy"] == (2, "failed") and current["compile"] == (1, "succeeded")
    attempts = [(a["attempt"], a["status"], a["from_stage"]) for a in detail["attempts"]]
    assert attempts == [(2, "failed", "deploy"), (1, "succeeded", "config")]
    assert [s["stage"] for s in detail["attempts"][0]["steps"]] == ["deploy"]


def test_the_email_the_dashboard_and_kiln_status_show_a_replayed_builds_attempts(sessions, capsys):
    build_id = str(uuid.uuid4())
    first = full_build_stream(build_id)
    last = first[-1].time

    def attempt_two(event, seconds: int) -> Envelope:
        envelope = Envelope.new(event, source="deployer", build_id=build_id, package="demo")
        return envelope.model_copy(update={"attempt": 2, "time": last + timedelta(seconds=seconds)})

    store(sessions, first)
    store(
        sessions,
        [
            attempt_two(StageStarted(stage="deploy"), 1),
            attempt_two(
                StageFinished(stage="deploy", status="failed", duration_ms=900, error="port taken"), 2
            ),
            attempt_two(
                BuildFinished(status="failed", duration_ms=2000, failed_stage="deploy", error="port taken"), 3
            ),
        ],
    )
    with sessions() as session:
        detail = build_detail(session, build_id)
    view = report_view(detail, build_url="http://kiln.example/ui/builds/x")
    html, text_part = render_html(view), render_text(view)
    assert 'id="attempts"' in html and "#2" in html and "port taken" in html
    assert "ATTEMPTS (latest first)\n  #2   failed     from Deploy" in text_part
    assert text_part.index("#2") < text_part.index("#1 ")
    page = dashboard_templates.get_template("build.html").render(
        {**detail, "timeline": [], "image_grid": {"platforms": [], "rows": {}}, "logs": []}
    )
    assert '<tr data-attempt="2">' in page and page.index('data-attempt="2"') < page.index('data-attempt="1"')

    class Reply:
        def get(self, path):
            return json.loads(json.dumps(detail, default=str))

    status(Reply(), argparse.Namespace(build=build_id, json=False))
    printed = capsys.readouterr().out
    assert "attempts (latest first" in printed and "#2   failed     from deploy" in printed
