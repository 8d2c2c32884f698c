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
from services.gateway.ports import Claim, ClaimRequest
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

    def claim(self, requests: list[ClaimRequest]) -> list[Claim]:
        """One transaction for a whole batch: delivery keys first, then the order keys of fresh
        deliveries, then build numbers for fresh orders (each phase in sorted order)."""
        now = _now()
        with self._sessions() as session:
            delivery_keys = [r.delivery_key for r in requests if r.delivery_key]
            delivery_fresh = iter(self._reserve_many(session, delivery_keys, now))
            live = [r.delivery_key is None or next(delivery_fresh) for r in requests]
            order_keys = [k for r, ok in zip(requests, live, strict=True) if ok for k in r.keys if k]
            key_fresh = iter(self._reserve_many(session, order_keys, now))
            fresh = [
                tuple(ok and (key is None or next(key_fresh)) for key in r.keys)
                for r, ok in zip(requests, live, strict=True)
            ]
            wanted = [
                p
                for r, f in zip(requests, fresh, strict=True)
                for p, new in zip(r.packages, f, strict=True)
                if new
            ]
            numbers = iter(self._build_numbers(session, wanted))
            session.commit()
        return [Claim(fresh=f, numbers=tuple(next(numbers) if new else None for new in f)) for f in fresh]

    def _reserve_many(self, session: Session, keys: list[str], now: datetime) -> list[bool]:
        """Per key: new? A key twice in one batch (concurrent redeliveries) is new only once."""
        fresh = [False] * len(keys)
        claimed: set[str] = set()
        for index in sorted(range(len(keys)), key=lambda i: key_hash(keys[i])):
            key = keys[index]
            if key not in claimed:
                claimed.add(key)
                fresh[index] = self._reserve_one(session, key, now)
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

    @staticmethod
    def _build_numbers(session: Session, packages: list[str]) -> list[int]:
        """Numbers in request order, increasing per package. The counter's row lock lasts until
        this batch's commit, never while waiting for the broker."""
        first: dict[str, int] = {}
        if packages:
            for package, count in sorted(Counter(packages).items()):
                first[package] = next_build_number(session, package)  # creates and locks the row
                if count > 1:  # the rest of this batch's numbers under the same lock
                    session.execute(
                        update(BuildCounter)
                        .where(BuildCounter.package == package)
                        .values(last_number=BuildCounter.last_number + (count - 1))
                    )
        numbers = []
        for package in packages:
            numbers.append(first[package])
            first[package] += 1
        return numbers
