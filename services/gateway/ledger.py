"""DeliveryLedger on the gateway's table `gateway_delivery_key` plus the shared build counter.

Every method is one transaction over a whole batch (see batching.py). Rows are touched in sorted
order, so two gateway replicas working on overlapping batches cannot deadlock.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, update
from sqlalchemy.orm import Session, sessionmaker

from services.gateway.models import DeliveryKey
from shared.db import next_build_number
from shared.db.models import BuildCounter


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class SqlDeliveryLedger:
    def __init__(self, sessions: sessionmaker[Session], *, pending_takeover_s: float = 60.0):
        self._sessions = sessions
        self._takeover = timedelta(seconds=pending_takeover_s)

    def reserve(self, keys: list[str]) -> list[bool]:
        """True for each key seen for the first time (or whose first attempt died pending)."""
        now = _now()
        fresh = [False] * len(keys)
        with self._sessions() as session:
            for index in sorted(range(len(keys)), key=lambda i: key_hash(keys[i])):
                fresh[index] = self._reserve_one(session, keys[index], now)
            session.commit()
        return fresh

    def _reserve_one(self, session: Session, key: str, now: datetime) -> bool:
        digest = key_hash(key)
        inserted = session.execute(
            insert(DeliveryKey)
            .prefix_with("IGNORE")  # a duplicate is an answer, not an error that aborts the batch
            .values(key_hash=digest, key=key[:700], state="pending", created_at=now)
        ).rowcount
        if inserted == 1:
            return True
        taken = session.execute(
            update(DeliveryKey)
            .where(
                DeliveryKey.key_hash == digest,
                DeliveryKey.state == "pending",
                DeliveryKey.created_at < now - self._takeover,
            )
            .values(created_at=now)
        ).rowcount
        return taken == 1

    def confirm(self, keys: list[str]) -> None:
        if not keys:
            return
        with self._sessions() as session:
            session.execute(
                update(DeliveryKey)
                .where(DeliveryKey.key_hash.in_(sorted(key_hash(k) for k in keys)))
                .values(state="published")
            )
            session.commit()

    def release(self, keys: list[str]) -> None:
        if not keys:
            return
        with self._sessions() as session:
            session.execute(delete(DeliveryKey).where(DeliveryKey.key_hash.in_([key_hash(k) for k in keys])))
            session.commit()

    def build_numbers(self, packages: list[str]) -> list[int]:
        """Numbers in request order, increasing per package. Own short transaction: the counter's
        row lock is never held while waiting for the broker."""
        first: dict[str, int] = {}
        with self._sessions() as session:
            for package, count in sorted(Counter(packages).items()):
                first[package] = next_build_number(session, package)  # creates and locks the row
                if count > 1:  # the rest of this batch's numbers under the same lock
                    session.execute(
                        update(BuildCounter)
                        .where(BuildCounter.package == package)
                        .values(last_number=BuildCounter.last_number + (count - 1))
                    )
            session.commit()
        numbers = []
        for package in packages:
            numbers.append(first[package])
            first[package] += 1
        return numbers
