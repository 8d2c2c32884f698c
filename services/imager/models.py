"""The imager's own state: which platform images of a target exist, and its multi-arch index.

Migration: shared/db/migrations/versions/imager_0001_manifest_state.py (branch "imager").
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models import BUILD_ID, Base


class PlatformImage(Base):
    """One (build, target, platform): expected by compile.completed and/or reported by image.pushed."""

    __tablename__ = "imager_platform_image"
    __table_args__ = (UniqueConstraint("build_id", "target", "platform", name="uq_imager_platform_image"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    build_id: Mapped[str] = mapped_column(BUILD_ID)
    target: Mapped[str] = mapped_column(String(100))
    platform: Mapped[str] = mapped_column(String(20))
    expected: Mapped[bool] = mapped_column(Boolean, default=False)
    pushed: Mapped[bool] = mapped_column(Boolean, default=False)
    repository: Mapped[str | None] = mapped_column(String(500))
    tag: Mapped[str | None] = mapped_column(String(128))
    digest: Mapped[str | None] = mapped_column(String(80))


class TargetIndex(Base):
    """The multi-arch index pushed for (build, target); its row is the 'already done' marker."""

    __tablename__ = "imager_target_index"
    __table_args__ = (UniqueConstraint("build_id", "target", name="uq_imager_target_index"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    build_id: Mapped[str] = mapped_column(BUILD_ID)
    target: Mapped[str] = mapped_column(String(100))
    repository: Mapped[str] = mapped_column(String(500))
    tag: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str] = mapped_column(String(80))
