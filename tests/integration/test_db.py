"""The Alembic migration on real MariaDB, and the models writing and reading through it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from shared.db import next_build_number
from shared.db.models import BuildCompile, BuildRun, BuildStep, EventLog, ProcessedEvent

pytestmark = pytest.mark.integration

CORE_TABLES = {
    "log_build_run",
    "log_build_step",
    "log_build_compile",
    "log_build_compile_set",
    "log_build_scan",
    "log_build_image",
    "log_audit",
    "event_log",
    "kiln_processed_event",
    "kiln_build_counter",
    "alembic_version",
}


def test_migration_created_every_table(db_engine):
    assert set(inspect(db_engine).get_table_names()) >= CORE_TABLES


def test_models_write_and_read(sessions):
    now = datetime.now(UTC).replace(tzinfo=None)
    with sessions() as session:
        session.add(
            BuildRun(
                build_id="run-1",
                package="demo",
                status="running",
                platforms=["linux/amd64", "linux/arm64"],
                options={"skip_deploy": True},
                requested_at=now,
            )
        )
        session.add(BuildStep(build_id="run-1", stage="compile", status="succeeded", duration_ms=1200))
        session.add(
            BuildCompile(
                build_id="run-1",
                platform="linux/amd64",
                module="core.text",
                factory="core",
                status="error",
                error="x" * 5000,
                file="core/text.py",
                line=3,
            )
        )
        session.commit()
    with sessions() as session:
        run = session.execute(select(BuildRun).where(BuildRun.build_id == "run-1")).scalar_one()
        assert run.platforms == ["linux/amd64", "linux/arm64"] and run.options == {"skip_deploy": True}
        assert run.requested_at == now  # microseconds survive (DATETIME(6))
        module = session.execute(select(BuildCompile).where(BuildCompile.build_id == "run-1")).scalar_one()
        assert module.line == 3 and len(module.error) == 5000


def test_natural_keys_refuse_duplicates(sessions):
    with sessions() as session:
        session.add(ProcessedEvent(consumer="c", event_id="e"))
        session.commit()
        session.add(ProcessedEvent(consumer="c", event_id="e"))
        with pytest.raises(IntegrityError):
            session.commit()


def test_event_log_holds_large_bodies(sessions):
    body = "{" + '"x": "' + "y" * 200_000 + '"}'
    with sessions() as session:
        session.add(
            EventLog(
                event_id="ev-big",
                type="dev.kiln.compile.completed.v1",
                routing_key="compile.completed",
                source="/kiln/compiler",
                build_id="run-1",
                time=datetime.now(UTC).replace(tzinfo=None),
                body=body,
                received_at=datetime.now(UTC).replace(tzinfo=None),
            )
        )
        session.commit()
        stored = session.execute(select(EventLog.body).where(EventLog.event_id == "ev-big")).scalar_one()
        assert len(stored) == len(body)


def test_build_numbers_increase_per_package_under_concurrency(sessions):
    def take(package: str) -> int:
        with sessions() as session, session.begin():
            return next_build_number(session, package)

    with ThreadPoolExecutor(max_workers=8) as pool:
        numbers = list(pool.map(take, ["numbered"] * 20))  # all race to create the counter
    assert sorted(numbers) == list(range(1, 21))
    assert take("other-package") == 1
