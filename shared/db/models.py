"""The run history (owned by the reporter, read by the gateway) and the shared idempotency table.

Table and column names follow the seed (`log_build_*`). Every table a projection writes has a
natural unique key, so replaying an event stream updates rows instead of adding them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.mysql import DATETIME as MYSQL_DATETIME
from sqlalchemy.dialects.mysql import LONGTEXT
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

BUILD_ID = String(36)
# MariaDB stores JSON as LONGTEXT; plain Text would cap a compile report at 64 KiB.
BigText = Text().with_variant(LONGTEXT(), "mysql", "mariadb")
Json = JSON()
# Microsecond timestamps: event order within one build is finer than a second.
PreciseTime = DateTime().with_variant(MYSQL_DATETIME(fsp=6), "mysql", "mariadb")


class Base(DeclarativeBase):
    pass


class BuildRun(Base):
    __tablename__ = "log_build_run"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    build_id: Mapped[str] = mapped_column(BUILD_ID, unique=True)
    package: Mapped[str] = mapped_column(String(100), index=True)
    build_number: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    version: Mapped[str | None] = mapped_column(String(50))
    repo_url: Mapped[str | None] = mapped_column(String(500))
    ref: Mapped[str | None] = mapped_column(String(255), index=True)
    commit_sha: Mapped[str | None] = mapped_column(String(64))
    trigger_kind: Mapped[str | None] = mapped_column(String(30))
    trigger_actor: Mapped[str | None] = mapped_column(String(255))
    platforms: Mapped[list[str] | None] = mapped_column(Json)
    options: Mapped[dict[str, Any] | None] = mapped_column(Json)
    host_arch: Mapped[str | None] = mapped_column(String(30))
    host_os: Mapped[str | None] = mapped_column(String(100))
    requested_at: Mapped[datetime | None] = mapped_column(PreciseTime)
    started_at: Mapped[datetime | None] = mapped_column(PreciseTime)
    finished_at: Mapped[datetime | None] = mapped_column(PreciseTime)
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    failed_stage: Mapped[str | None] = mapped_column(String(30))
    error: Mapped[str | None] = mapped_column(BigText)
    replay_of: Mapped[str | None] = mapped_column(BUILD_ID)
    # The newest attempt seen (a replay is the build's next attempt): `status` is that attempt's.
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Held by its concurrency group (build.waiting): what it waits for; "" once released.
    waiting_on: Mapped[str | None] = mapped_column(String(255))


class BuildStep(Base):
    __tablename__ = "log_build_step"
    # One row per attempt: a replay's rerun keeps the steps of the attempts before it.
    __table_args__ = (
        UniqueConstraint("build_id", "stage", "target", "platform", "attempt", name="uq_step_attempt"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    build_id: Mapped[str] = mapped_column(BUILD_ID, index=True)
    stage: Mapped[str] = mapped_column(String(30))
    # Empty string, not NULL, for build-wide stages: NULLs never collide in a unique key.
    target: Mapped[str] = mapped_column(String(100), default="")
    platform: Mapped[str] = mapped_column(String(20), default="")
    status: Mapped[str] = mapped_column(String(20))
    service: Mapped[str | None] = mapped_column(String(50))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime | None] = mapped_column(PreciseTime)
    finished_at: Mapped[datetime | None] = mapped_column(PreciseTime)
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[dict[str, Any] | None] = mapped_column(Json)
    error: Mapped[str | None] = mapped_column(BigText)
    log_tail: Mapped[list[str] | None] = mapped_column(Json)


class BuildCompile(Base):
    __tablename__ = "log_build_compile"
    __table_args__ = (UniqueConstraint("build_id", "platform", "module", name="uq_compile_module"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    build_id: Mapped[str] = mapped_column(BUILD_ID, index=True)
    platform: Mapped[str] = mapped_column(String(20))
    module: Mapped[str] = mapped_column(String(255))
    factory: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    file: Mapped[str | None] = mapped_column(String(500))
    line: Mapped[int | None] = mapped_column(Integer)


class BuildCompileSet(Base):
    __tablename__ = "log_build_compile_set"
    __table_args__ = (UniqueConstraint("build_id", "platform", "factory", name="uq_compile_set"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    build_id: Mapped[str] = mapped_column(BUILD_ID, index=True)
    platform: Mapped[str] = mapped_column(String(20))
    factory: Mapped[str] = mapped_column(String(100))
    modules: Mapped[int] = mapped_column(Integer)
    ok: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    cached: Mapped[int] = mapped_column(Integer, default=0)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)


class BuildScan(Base):
    __tablename__ = "log_build_scan"
    __table_args__ = (UniqueConstraint("build_id", "target", "platform", name="uq_scan"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    build_id: Mapped[str] = mapped_column(BUILD_ID, index=True)
    target: Mapped[str] = mapped_column(String(100))
    platform: Mapped[str] = mapped_column(String(20))
    digest: Mapped[str] = mapped_column(String(100))
    scanner: Mapped[str] = mapped_column(String(20))
    critical: Mapped[int] = mapped_column(Integer, default=0)
    high: Mapped[int] = mapped_column(Integer, default=0)
    medium: Mapped[int] = mapped_column(Integer, default=0)
    low: Mapped[int] = mapped_column(Integer, default=0)
    unknown: Mapped[int] = mapped_column(Integer, default=0)
    secrets: Mapped[int] = mapped_column(Integer, default=0)
    verdict: Mapped[str] = mapped_column(String(10))
    vuln_db: Mapped[str] = mapped_column(String(10), default="ok")
    findings: Mapped[list[dict[str, Any]] | None] = mapped_column(Json)
    scanned_at: Mapped[datetime | None] = mapped_column(PreciseTime)
    # Which vulnerability data was consulted (and how old), the verdict's reasons: the event's note.
    note: Mapped[str | None] = mapped_column(Text)


# log_build_image.platform of a row that records a multi-arch index rather than one platform's image.
MANIFEST_PLATFORM = "multi-arch"


class BuildImage(Base):
    __tablename__ = "log_build_image"
    __table_args__ = (UniqueConstraint("build_id", "target", "platform", name="uq_image"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    build_id: Mapped[str] = mapped_column(BUILD_ID, index=True)
    target: Mapped[str] = mapped_column(String(100))
    platform: Mapped[str] = mapped_column(String(20))
    repository: Mapped[str] = mapped_column(String(500))
    tag: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str | None] = mapped_column(String(100))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20), default="pushed")
    error: Mapped[str | None] = mapped_column(Text)
    pushed_at: Mapped[datetime | None] = mapped_column(PreciseTime)


class Audit(Base):
    __tablename__ = "log_audit"
    __table_args__ = (UniqueConstraint("event_id", name="uq_audit_event"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36))
    build_id: Mapped[str | None] = mapped_column(BUILD_ID, index=True)
    mode: Mapped[str] = mapped_column(String(20))
    target: Mapped[str] = mapped_column(String(255), default="")
    counts: Mapped[dict[str, int] | None] = mapped_column(Json)
    findings: Mapped[list[dict[str, Any]] | None] = mapped_column(Json)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime | None] = mapped_column(PreciseTime)
    # The audit stage's rows (migration reporter_0002): the pushed image and the mode's verdict
    # (pass / fail / report); NULL for the standalone CLI's audits of a path.
    image: Mapped[str | None] = mapped_column(String(100))
    platform: Mapped[str | None] = mapped_column(String(20))
    digest: Mapped[str | None] = mapped_column(String(80))
    verdict: Mapped[str | None] = mapped_column(String(10))


class EventLog(Base):
    """Every event Kiln saw, verbatim: the source of replays and of late projections."""

    __tablename__ = "event_log"
    __table_args__ = (Index("ix_event_log_build_type", "build_id", "type"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(100))
    routing_key: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(100))
    build_id: Mapped[str] = mapped_column(BUILD_ID)
    package: Mapped[str | None] = mapped_column(String(100))
    time: Mapped[datetime] = mapped_column(PreciseTime)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    replay_of: Mapped[str | None] = mapped_column(String(36))
    body: Mapped[str] = mapped_column(BigText)
    received_at: Mapped[datetime] = mapped_column(PreciseTime)
    projected: Mapped[bool] = mapped_column(default=False)


class ProcessedEvent(Base):
    """Idempotency keys: (consumer, event id) handled once."""

    __tablename__ = "kiln_processed_event"
    __table_args__ = (UniqueConstraint("consumer", "event_id", name="uq_processed"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    consumer: Mapped[str] = mapped_column(String(150))
    event_id: Mapped[str] = mapped_column(String(36))


class BuildCounter(Base):
    """The increasing build number per package (the gateway takes the next one under a row lock)."""

    __tablename__ = "kiln_build_counter"

    package: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer, default=0)
