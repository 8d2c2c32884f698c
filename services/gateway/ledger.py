"""DeliveryLedger on the gateway's table `gateway_delivery_key` plus the shared build counter."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from services.gateway.models import DeliveryKey
from shared.db import next_build_number


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class SqlDeliveryLedger:
    def __init__(self, sessions: sessionmaker[Session], *, pending_takeover_s: float = 60.0):
        self._sessions = sessions
        self._takeover = timedelta(seconds=pending_takeover_s)

    def reserve(self, keys: list[str]) -> list[bool]:
        fresh: list[bool] = []
        with self._sessions() as session:
            for key in keys:
                fresh.append(self._reserve_one(session, key))
            session.commit()
        return fresh

    def _reserve_one(self, session: Session, key: str) -> bool:
        digest = key_hash(key)
        row = session.execute(
            select(DeliveryKey).where(DeliveryKey.key_hash == digest).with_for_update()
        ).scalar_one_or_none()
        if row is not None:
            if row.state == "pending" and _now() - row.created_at > self._takeover:
                row.created_at = _now()  # the first attempt died before publishing: take it over
                return True
            return False
        try:
            with session.begin_nested():
                session.add(DeliveryKey(key_hash=digest, key=key[:700], state="pending", created_at=_now()))
        except IntegrityError:  # a concurrent delivery of the same key won the insert
            return False
        return True

    def confirm(self, keys: list[str], build_ids: list[str]) -> None:
        if not keys:
            return
        with self._sessions() as session:
            session.execute(
                update(DeliveryKey)
                .where(DeliveryKey.key_hash.in_([key_hash(k) for k in keys]))
                .values(state="published", build_ids=build_ids)
            )
            session.commit()

    def release(self, keys: list[str]) -> None:
        if not keys:
            return
        with self._sessions() as session:
            session.execute(delete(DeliveryKey).where(DeliveryKey.key_hash.in_([key_hash(k) for k in keys])))
            session.commit()

    def build_numbers(self, packages: list[str]) -> list[int]:
        # Own short transaction: the counter's row lock must not be held while we wait for the broker.
        with self._sessions() as session:
            numbers = [next_build_number(session, package) for package in packages]
            session.commit()
        return numbers
