"""The gateway's own state: webhook redelivery keys and HTTP subscriptions (migrations gateway_*)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models import Base, Json, PreciseTime


class DeliveryKey(Base):
    """One redelivery key: a provider delivery id, or one (repo, ref, commit, package).

    `state` is "pending" between reserving the key and the broker's confirm, then "published".
    A pending key older than the takeover age is treated as lost (the process died) and reused.
    """

    __tablename__ = "gateway_delivery_key"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key: Mapped[str] = mapped_column(String(700))
    state: Mapped[str] = mapped_column(String(10), default="pending")
    build_ids: Mapped[list[str] | None] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(PreciseTime)


class Subscription(Base):
    """An HTTP receiver of events matching `filter` (an AMQP topic pattern)."""

    __tablename__ = "gateway_subscription"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String(1000))
    filter: Mapped[str] = mapped_column(String(200), default="#")
    # HMAC key for the X-Kiln-Signature header; shown once at registration.
    secret: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    delivered: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[str | None] = mapped_column(String(30))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_event_id: Mapped[str | None] = mapped_column(String(36))
    last_attempt_at: Mapped[datetime | None] = mapped_column(PreciseTime)
    created_at: Mapped[datetime] = mapped_column(PreciseTime)
    # Circuit breaker (gateway_0002): failed events in a row, and no delivery before paused_until.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    paused_until: Mapped[datetime | None] = mapped_column(PreciseTime)

    def state(self, now: datetime) -> str:
        if not self.active:
            return "deleted"
        return "paused" if self.paused_until is not None and self.paused_until > now else "active"

    def public(self, now: datetime | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "filter": self.filter,
            "active": self.active,
            "delivered": self.delivered,
            "failures": self.failures,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "last_event_id": self.last_event_id,
            "last_attempt_at": self.last_attempt_at.isoformat() if self.last_attempt_at else None,
            "consecutive_failures": self.consecutive_failures or 0,
            "paused_until": self.paused_until.isoformat() if self.paused_until else None,
            "state": self.state(now or datetime.now(UTC).replace(tzinfo=None)),
        }


class ConcurrencyGroup(Base):
    """One package + branch: the row every admission and release of the group locks first
    (SELECT … FOR UPDATE), so replicas and worker processes decide one at a time."""

    __tablename__ = "gateway_concurrency_group"

    group_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    package: Mapped[str] = mapped_column(String(100))
    branch: Mapped[str] = mapped_column(String(255))


class ConcurrencySlot(Base):
    """One build of a concurrency group, from admission to its build.finished.

    `state`: waiting (held back, `request` holds its build.requested data) -> starting (released,
    its build.requested not yet confirmed) -> running; running -> superseded (a newer build took
    its slot; its cancel is out); waiting -> cancelled (cancelled before it started: never
    released; the deployer's gate ends it, as every cancelled build). The row goes when the
    build's build.finished arrives. `id` orders the group's waiting builds (FIFO)."""

    __tablename__ = "gateway_concurrency_slot"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    build_id: Mapped[str] = mapped_column(String(36), unique=True)
    group_hash: Mapped[str] = mapped_column(String(64), index=True)
    package: Mapped[str] = mapped_column(String(100))
    build_number: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(12))
    request: Mapped[dict[str, Any] | None] = mapped_column(Json)
    note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(PreciseTime)
    updated_at: Mapped[datetime] = mapped_column(PreciseTime)
