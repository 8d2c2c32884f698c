"""The reporter's own state: what it tried to tell people and tools, and how that went."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models import BUILD_ID, Base, PreciseTime


class NotificationAttempt(Base):
    """One email recipient or commit status per triggering event; `sent` rows make redelivery a no-op."""

    __tablename__ = "reporter_notification"
    __table_args__ = (UniqueConstraint("event_id", "channel", "target", name="uq_notification"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36))
    build_id: Mapped[str] = mapped_column(BUILD_ID, index=True)
    channel: Mapped[str] = mapped_column(String(20))  # email | commit-status
    target: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(10))  # sent | failed | skipped
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(PreciseTime)
