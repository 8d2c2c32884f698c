"""Subscriptions in the gateway's table `gateway_subscription`."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from services.gateway.models import Subscription


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
        created_at=_now(),
    )
    session.add(row)
    session.commit()
    return {**row.public(), "secret": row.secret}  # the only time the secret is shown


def list_all(session: Session) -> list[dict[str, Any]]:
    return [s.public() for s in session.execute(select(Subscription).order_by(Subscription.id)).scalars()]


def deactivate(session: Session, subscription_id: int) -> bool:
    changed = session.execute(
        update(Subscription).where(Subscription.id == subscription_id).values(active=False)
    ).rowcount
    session.commit()
    return changed == 1


def active(session: Session) -> list[tuple[int, str, str, str]]:
    """(id, url, filter, secret) of every active subscription."""
    rows = session.execute(
        select(Subscription.id, Subscription.url, Subscription.filter, Subscription.secret).where(
            Subscription.active.is_(True)
        )
    )
    return [tuple(row) for row in rows]  # type: ignore[misc]


def record(session: Session, subscription_id: int, event_id: str, status: str, error: str | None) -> None:
    ok = error is None
    session.execute(
        update(Subscription)
        .where(Subscription.id == subscription_id)
        .values(
            last_status=status,
            last_error=error,
            last_event_id=event_id,
            last_attempt_at=_now(),
            delivered=Subscription.delivered + (1 if ok else 0),
            failures=Subscription.failures + (0 if ok else 1),
        )
    )
    session.commit()
