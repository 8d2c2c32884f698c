"""Subscriptions in the gateway's table `gateway_subscription`."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from services.gateway.models import Subscription

# The circuit breaker's pause doubles with each further failed event, up to this.
MAX_PAUSE_S = 3600.0


@dataclass(frozen=True)
class Breaker:
    failures: int = 5  # failed events in a row that pause a subscription
    pause_s: float = 60.0  # the first pause; doubled on each failure after it, capped at MAX_PAUSE_S

    def pause(self, consecutive: int) -> timedelta | None:
        if consecutive < self.failures:
            return None
        return timedelta(seconds=min(MAX_PAUSE_S, self.pause_s * 2 ** min(consecutive - self.failures, 16)))


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def create(session: Session, url: str, filter: str) -> dict[str, Any]:
    row = Subscription(
        url=url,
        filter=filter,
        secret=secrets.token_hex(32),
        active=True,
        delivered=0,
        failures=0,
        consecutive_failures=0,
        created_at=_now(),
    )
    session.add(row)
    session.commit()
    return {**row.public(), "secret": row.secret}  # the only time the secret is shown


def count_active(session: Session) -> int:
    return session.execute(
        select(func.count()).select_from(Subscription).where(Subscription.active.is_(True))
    ).scalar_one()


def list_all(session: Session) -> list[dict[str, Any]]:
    now = _now()
    rows = session.execute(select(Subscription).order_by(Subscription.id)).scalars()
    return [s.public(now) for s in rows]


def deactivate(session: Session, subscription_id: int) -> bool:
    changed = session.execute(
        update(Subscription).where(Subscription.id == subscription_id).values(active=False)
    ).rowcount
    session.commit()
    return changed == 1


def active(session: Session) -> list[tuple[int, str, str, str]]:
    """(id, url, filter, secret) of every active subscription that is not paused by its breaker."""
    rows = session.execute(
        select(Subscription.id, Subscription.url, Subscription.filter, Subscription.secret).where(
            Subscription.active.is_(True),
            or_(Subscription.paused_until.is_(None), Subscription.paused_until <= _now()),
        )
    )
    return [tuple(row) for row in rows]  # type: ignore[misc]


def record(
    session: Session,
    subscription_id: int,
    event_id: str,
    status: str,
    error: str | None,
    breaker: Breaker = Breaker(),
) -> bool:
    """Store one event's outcome; True when it paused the subscription (its breaker opened)."""
    ok = error is None
    row = session.execute(
        select(Subscription).where(Subscription.id == subscription_id).with_for_update()
    ).scalar_one_or_none()
    if row is None:
        session.rollback()
        return False
    consecutive = 0 if ok else (row.consecutive_failures or 0) + 1
    pause = None if ok else breaker.pause(consecutive)
    now = _now()
    row.last_status = status
    row.last_error = error
    row.last_event_id = event_id
    row.last_attempt_at = now
    row.delivered = (row.delivered or 0) + (1 if ok else 0)
    row.failures = (row.failures or 0) + (0 if ok else 1)
    row.consecutive_failures = consecutive
    row.paused_until = now + pause if pause is not None else None
    session.commit()
    return pause is not None
