"""The gate's fact rows on real MariaDB: migration deployer_0003 from the previous head (with a
build in flight, whose old columns become facts), and the store writing facts idempotently."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pymysql
import pytest
from alembic import command
from sqlalchemy import inspect, text

from services.deployer.gate import Fact
from services.deployer.store import GateStore
from shared.db import make_engine, make_sessions, upgrade
from shared.db.engine import alembic_config
from tests.conftest import RUN_ID, _server_url

pytestmark = pytest.mark.integration

OLD_COLUMNS = {"pushed", "scanned", "verdict", "scan_summary", "failure"}


@pytest.fixture
def scratch_url() -> Iterator[str]:
    """A database of its own: this test migrates it up and down, the shared one stays at head."""
    connect, server = _server_url()
    name = f"kiln_test_{RUN_ID}_facts_{uuid.uuid4().hex[:6]}"
    with pymysql.connect(**connect) as conn, conn.cursor() as cur:  # type: ignore[arg-type]
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    yield server.rstrip("/") + "/" + name + "?charset=utf8mb4"
    with pymysql.connect(**connect) as conn, conn.cursor() as cur:  # type: ignore[arg-type]
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


def _old_image(conn, build_id: str, target: str, platform: str, **values: object) -> None:
    row = {"pushed": 0, "scanned": 0, "verdict": None, "scan_summary": None, "failure": None, **values}
    conn.execute(
        text(
            "INSERT INTO deployer_image (build_id, target, platform, expected, pushed, repository, tag, "
            "digest, scanned, verdict, scan_summary, failure) VALUES (:b, :t, :p, 1, :pushed, 'r/w', 'b1', "
            "'sha256:1', :scanned, :verdict, :scan_summary, :failure)"
        ),
        {"b": build_id, "t": target, "p": platform, **row},
    )


def test_migration_from_the_previous_head_turns_columns_into_facts(scratch_url):
    upgrade(scratch_url, "deployer_0002")  # the deployer's head before the facts (and 0001_core)
    engine = make_engine(scratch_url)
    try:
        with engine.begin() as conn:
            _old_image(conn, "b-1", "web", "linux/amd64", pushed=1, scanned=1, verdict="pass")
            _old_image(
                conn, "b-1", "web", "linux/arm64", pushed=1, scanned=1, verdict="fail", scan_summary="C=1"
            )
            _old_image(conn, "b-1", "api", "linux/amd64", failure="pip exploded")
        upgrade(scratch_url)  # what `python -m shared.db upgrade` runs: every branch to its head
        columns = {c["name"] for c in inspect(engine).get_columns("deployer_image")}
        assert not columns & OLD_COLUMNS
        assert {"expected", "repository", "tag", "digest"} <= columns
        store = GateStore(make_sessions(engine))
        assert sorted(store.facts("b-1"), key=lambda f: (f.target, f.platform, f.fact)) == [
            Fact("api", "linux/amd64", "image", False, "pip exploded"),
            Fact("web", "linux/amd64", "push", True),
            Fact("web", "linux/amd64", "scan", True),
            Fact("web", "linux/arm64", "push", True),
            Fact("web", "linux/arm64", "scan", False, "C=1"),
        ]
        assert {i.reference for i in store.images("b-1")} == {"r/w@sha256:1"}
        command.downgrade(alembic_config(scratch_url), "deployer_0002")  # and back, losing nothing
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT platform, pushed, scanned, verdict, scan_summary FROM deployer_image "
                    "WHERE target = 'web'"
                )
            ).all()
        assert sorted(rows) == [("linux/amd64", 1, 1, "pass", None), ("linux/arm64", 1, 1, "fail", "C=1")]
        assert "deployer_fact" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_a_fact_is_written_once_however_often_it_is_delivered(sessions):
    store = GateStore(sessions)
    build_id = str(uuid.uuid4())
    assert store.record_fact(build_id, "web", "linux/amd64", "scan", False, "CRITICAL=2; blocking: CVE-1")
    first = _recorded_at(sessions, build_id)
    for _ in range(3):  # redeliveries: the same fact, nothing written
        assert not store.record_fact(
            build_id, "web", "linux/amd64", "scan", False, "CRITICAL=2; blocking: CVE-1"
        )
    assert _recorded_at(sessions, build_id) == first
    assert store.record_fact(build_id, "web", "linux/amd64", "push", True, None)
    assert store.record_fact(
        build_id, "web", "linux/amd64", "attest", True, None
    )  # a new stage: no schema change
    assert sorted(f.fact for f in store.facts(build_id)) == ["attest", "push", "scan"]


def _recorded_at(sessions, build_id: str):
    with sessions() as session:
        return session.execute(
            text("SELECT recorded_at FROM deployer_fact WHERE build_id = :b AND fact = 'scan'"),
            {"b": build_id},
        ).scalar_one()
