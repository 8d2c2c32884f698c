"""The deployer's own tables: its gate state per build, per expected image, and per gate fact.

Unique keys make every write an upsert, so redelivered and replayed events change nothing twice.
`deployer_build.status` is the exactly-once guard: a build moves open -> deploying -> finished
by conditional updates, and only the handler whose update won emits the follow-up events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models import BUILD_ID, Base, BigText, PreciseTime

OPEN, DEPLOYING, FINISHED = "open", "deploying", "finished"
# SQLite (the gate's unit tests) autoincrements only INTEGER primary keys.
RowId = BigInteger().with_variant(Integer(), "sqlite")


class DeployerBuild(Base):
    __tablename__ = "deployer_build"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    build_id: Mapped[str] = mapped_column(BUILD_ID, unique=True)
    package: Mapped[str] = mapped_column(String(100), default="")
    options: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # build.requested's source (repo_url, ref, commit, path): the docs stage checks it out.
    source: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Set by compile.completed: until then the deployer does not know what to wait for.
    targets_known: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default=OPEN)
    # The event whose handler claimed the deploy / finished the build: its redelivery may redo it.
    claim_event_id: Mapped[str | None] = mapped_column(String(36))
    finish_event_id: Mapped[str | None] = mapped_column(String(36))
    finish_status: Mapped[str | None] = mapped_column(String(20))
    started_at: Mapped[datetime | None] = mapped_column(PreciseTime)
    # The attempt this state is of: an event of a newer one (a replay) reopens the gate.
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # compile.completed's app_config ({reference, digest}): the trimmed app config the deploy mounts.
    app_config: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class DeployerImage(Base):
    """An image of the build: expected (from compile.completed) and its reference (image.pushed)."""

    __tablename__ = "deployer_image"
    __table_args__ = (UniqueConstraint("build_id", "target", "platform", name="uq_deployer_image"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    build_id: Mapped[str] = mapped_column(BUILD_ID, index=True)
    target: Mapped[str] = mapped_column(String(100))
    platform: Mapped[str] = mapped_column(String(20))
    expected: Mapped[bool] = mapped_column(Boolean, default=False)
    repository: Mapped[str | None] = mapped_column(String(500))
    tag: Mapped[str | None] = mapped_column(String(128))
    digest: Mapped[str | None] = mapped_column(String(80))


class DeployerFact(Base):
    """What one gate stage (shared.stages, gate=True) said about one image: a row per fact, so a
    new gate stage needs no new column. `fact` is the stage's name, or "image" (image.failed)."""

    __tablename__ = "deployer_fact"
    __table_args__ = (UniqueConstraint("build_id", "target", "platform", "fact", name="uq_deployer_fact"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    build_id: Mapped[str] = mapped_column(BUILD_ID, index=True)
    target: Mapped[str] = mapped_column(String(100))
    platform: Mapped[str] = mapped_column(String(20))
    fact: Mapped[str] = mapped_column(String(40))
    ok: Mapped[bool] = mapped_column(Boolean)
    summary: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(PreciseTime)


class DeployerRelease(Base):
    """What the deploy of one build released on the substrate: the image reference (pinned by
    digest) of each service and the trimmed config the containers mount. A rollback to that build
    (`rollback.requested`) redeploys exactly this (services/deployer/rollback.py). One row per
    build: a replay's redeploy of the same build overwrites it with what it released."""

    __tablename__ = "deployer_release"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    build_id: Mapped[str] = mapped_column(BUILD_ID, unique=True)
    package: Mapped[str] = mapped_column(String(100))
    platform: Mapped[str] = mapped_column(String(20))
    images: Mapped[dict[str, Any]] = mapped_column(JSON)
    config_json: Mapped[str] = mapped_column(BigText)
    # The build's trimmed app config (the document, no secrets in it), for a rollback to mount again.
    app_config_json: Mapped[str | None] = mapped_column(BigText)
    # Verify said healthy (no automatic roll back): only such a release is a rollback target.
    healthy: Mapped[bool] = mapped_column(Boolean)
    recorded_at: Mapped[datetime] = mapped_column(PreciseTime)
