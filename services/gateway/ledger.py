"""DeliveryLedger on the gateway's table `gateway_delivery_key` plus the shared build counter.

Every method is one transaction over a whole batch (see batching.py). Rows are touched in sorted
order, so two gateway replicas (or worker processes) working on overlapping batches cannot
deadlock. A claim costs a fixed number of statements however big the batch, unless one of its keys
was seen before (a redelivery): then the batch is redone key by key.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.mysql import insert as upsert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from services.gateway.models import DeliveryKey
from services.gateway.ports import Claim, ClaimRequest
from shared.db.models import BuildCounter

# MariaDB's answer when two replicas' batches lock the same rows in a different order (a duplicate
# key takes a shared lock on the existing row): the victim's transaction was rolled back, so
# running the batch again is safe.
DEADLOCK_ERRNO = 1213
DEADLOCK_RETRIES = 3
KEYS = DeliveryKey.__table__
# IGNORE: a key seen before is an answer (a redelivery), not an error that aborts the batch. Run
# with a list of rows (executemany: one multi-row statement, compiled once, rowcount = inserted).
INSERT_IGNORE = insert(KEYS).prefix_with("IGNORE")


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class SqlDeliveryLedger:
    def __init__(self, sessions: sessionmaker[Session], *, pending_takeover_s: float = 60.0):
        self._sessions = sessions
        self._takeover = timedelta(seconds=pending_takeover_s)

    def claim(self, requests: list[ClaimRequest]) -> list[Claim]:
        """One transaction for a whole batch. The common case (every key new) is one multi-row
        insert plus the build numbers; otherwise it is rolled back and redone key by key. A
        deadlock with another replica's batch is retried (the victim's work was rolled back)."""
        for attempt in range(DEADLOCK_RETRIES + 1):
            try:
                return self._claim(requests, _now())
            except OperationalError as exc:
                if attempt == DEADLOCK_RETRIES or _mysql_errno(exc) != DEADLOCK_ERRNO:
                    raise
        raise AssertionError("unreachable")

    def _claim(self, requests: list[ClaimRequest], now: datetime) -> list[Claim]:
        with self._sessions() as session:
            claims = self._claim_all_new(session, requests, now)
            if claims is None:
                session.rollback()
                claims = self._claim_key_by_key(session, requests, now)
            session.commit()
        return claims

    def _claim_all_new(
        self, session: Session, requests: list[ClaimRequest], now: datetime
    ) -> list[Claim] | None:
        """The claims if every key of the batch is new (this statement inserted them all), else None."""
        delivery_keys = [r.delivery_key for r in requests if r.delivery_key]
        order_keys = [k for r in requests for k in r.keys if k]
        if len(set(delivery_keys)) + len(set(order_keys)) != len(delivery_keys) + len(order_keys):
            return None  # the same key twice in one batch: concurrent redeliveries
        # Same lock order as the key-by-key path: delivery keys by hash, then order keys by hash.
        rows = [_row(k, now) for k in sorted(delivery_keys, key=key_hash)]
        rows += [_row(k, now) for k in sorted(order_keys, key=key_hash)]
        if rows and session.execute(INSERT_IGNORE, rows).rowcount != len(rows):
            return None
        numbers = iter(self._build_numbers(session, [p for r in requests for p in r.packages]))
        return [
            Claim(fresh=(True,) * len(r.keys), numbers=tuple(next(numbers) for _ in r.packages))
            for r in requests
        ]

    def _claim_key_by_key(self, session: Session, requests: list[ClaimRequest], now: datetime) -> list[Claim]:
        """Delivery keys first, then the order keys of fresh deliveries, then build numbers for
        fresh orders (each phase in sorted order)."""
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
        if session.execute(INSERT_IGNORE, [_row(key, now)]).rowcount == 1:
            return True
        taken = session.execute(
            update(KEYS)
            .where(
                KEYS.c.key_hash == digest,
                KEYS.c.state == "pending",
                KEYS.c.created_at < now - self._takeover,
            )
            .values(created_at=now)
        ).rowcount
        return taken == 1

    def confirm(self, keys: list[str]) -> None:
        if not keys:
            return
        with self._sessions() as session:
            session.execute(
                update(KEYS)
                .where(KEYS.c.key_hash.in_(sorted(key_hash(k) for k in keys)))
                .values(state="published")
            )
            session.commit()

    def release(self, keys: list[str]) -> None:
        if not keys:
            return
        with self._sessions() as session:
            session.execute(delete(KEYS).where(KEYS.c.key_hash.in_([key_hash(k) for k in keys])))
            session.commit()

    @staticmethod
    def _build_numbers(session: Session, packages: list[str]) -> list[int]:
        """Numbers in request order, increasing per package: one upsert per package takes all of
        this batch's numbers (creating the counter row if needed). The row lock lasts until this
        batch's commit, never while waiting for the broker."""
        first: dict[str, int] = {}
        counters = BuildCounter.__table__
        for package, count in sorted(Counter(packages).items()):
            session.execute(
                upsert(counters)
                .values(package=package, last_number=count)
                .on_duplicate_key_update(last_number=counters.c.last_number + count)
            )
            last = session.scalar(select(counters.c.last_number).where(counters.c.package == package))
            first[package] = last - count + 1
        numbers = []
        for package in packages:
            numbers.append(first[package])
            first[package] += 1
        return numbers


def _row(key: str, now: datetime) -> dict[str, object]:
    return {"key_hash": key_hash(key), "key": key[:700], "state": "pending", "created_at": now}


def _mysql_errno(exc: OperationalError) -> int | None:
    args = getattr(exc.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None
