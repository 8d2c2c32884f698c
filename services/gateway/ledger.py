"""DeliveryLedger on the gateway's table `gateway_delivery_key` plus the shared build counter."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, update
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
        return [self._reserve_one(key) for key in keys]

    def _reserve_one(self, key: str) -> bool:
        """One short transaction per key: concurrent deliveries of the same key contend on a
        single unique index entry, never on a gap lock, so they cannot deadlock each other."""
        digest = key_hash(key)
        now = _now()
        with self._sessions() as session:
            try:
                session.add(DeliveryKey(key_hash=digest, key=key[:700], state="pending", created_at=now))
                session.commit()
                return True
            except IntegrityError:
                session.rollback()
            # Seen before. Take it over only if its first attempt died before the broker confirm.
            taken = session.execute(
                update(DeliveryKey)
                .where(
                    DeliveryKey.key_hash == digest,
                    DeliveryKey.state == "pending",
                    DeliveryKey.created_at < now - self._takeover,
                )
                .values(created_at=now)
            ).rowcount
            session.commit()
            return taken == 1

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
