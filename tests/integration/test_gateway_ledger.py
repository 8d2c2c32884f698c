"""The redelivery ledger and build numbers on real MariaDB: the one-statement path for batches of
new keys, the key-by-key path for redeliveries, crash takeover, and two ledgers (two gateway
worker processes or replicas) claiming at once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select, update

from services.gateway.ledger import SqlDeliveryLedger, key_hash
from services.gateway.models import DeliveryKey
from services.gateway.ports import ClaimRequest

pytestmark = pytest.mark.integration


def order(package: str, key: str | None = None) -> ClaimRequest:
    return ClaimRequest(delivery_key=None, keys=(key or f"ref:{uuid.uuid4().hex}",), packages=(package,))


@contextmanager
def counting_statements(sessions) -> Iterator[list[str]]:
    engine = sessions.kw["bind"]
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement.split()[0] + " " + statement.split()[1])

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def state_of(sessions, key: str) -> str | None:
    with sessions() as session:
        return session.scalar(select(DeliveryKey.state).where(DeliveryKey.key_hash == key_hash(key)))


def test_a_batch_of_new_keys_gets_consecutive_numbers_in_request_order(sessions):
    ledger = SqlDeliveryLedger(sessions)
    package = f"l{uuid.uuid4().hex[:8]}"
    requests = [
        ClaimRequest(f"delivery:github:{uuid.uuid4()}", (f"ref:{uuid.uuid4().hex}", None), (package, "other"))
        for _ in range(5)
    ]
    with counting_statements(sessions) as statements:
        claims = ledger.claim(requests)
    # one multi-row insert of the 10 keys, then an upsert and a read per package: not per key
    assert len(statements) == 1 + 2 * 2, statements
    assert [c.fresh for c in claims] == [(True, True)] * 5
    assert [c.numbers[0] for c in claims] == [1, 2, 3, 4, 5]
    assert [n for c in ledger.claim([order(package)]) for n in c.numbers] == [6]
    assert state_of(sessions, requests[0].delivery_key) == "pending"
    ledger.confirm([requests[0].delivery_key])
    assert state_of(sessions, requests[0].delivery_key) == "published"


def test_redeliveries_in_a_batch_are_new_only_once_and_take_no_number(sessions):
    ledger = SqlDeliveryLedger(sessions)
    package = f"l{uuid.uuid4().hex[:8]}"
    first = ClaimRequest("delivery:github:d-1" + package, ("ref:r:main:abc:" + package,), (package,))
    (claim,) = ledger.claim([first])
    assert claim.fresh == (True,) and claim.numbers == (1,)
    again = ClaimRequest("delivery:github:d-2" + package, first.keys, (package,))  # same ref and hash
    fresh_one = order(package)
    twice = order(package)
    claims = ledger.claim([first, again, fresh_one, twice, ClaimRequest(None, twice.keys, (package,))])
    assert [c.fresh for c in claims] == [(False,), (False,), (True,), (True,), (False,)]
    assert [c.numbers for c in claims] == [(None,), (None,), (2,), (3,), (None,)]


def test_a_pending_key_is_taken_over_only_after_the_takeover_age(sessions):
    ledger = SqlDeliveryLedger(sessions, pending_takeover_s=60)
    package = f"l{uuid.uuid4().hex[:8]}"
    lost = order(package)
    ledger.claim([lost])
    assert ledger.claim([lost])[0].fresh == (False,)  # the first attempt may still be publishing
    with sessions() as session:  # ... until it has been pending longer than the takeover age
        session.execute(
            update(DeliveryKey)
            .where(DeliveryKey.key_hash == key_hash(lost.keys[0]))
            .values(created_at=utc_now() - timedelta(seconds=61))
        )
        session.commit()
    assert ledger.claim([lost])[0].fresh == (True,)
    ledger.confirm(list(lost.keys))
    with sessions() as session:
        session.execute(
            update(DeliveryKey)
            .where(DeliveryKey.key_hash == key_hash(lost.keys[0]))
            .values(created_at=utc_now() - timedelta(hours=1))
        )
        session.commit()
    assert ledger.claim([lost])[0].fresh == (False,)  # published keys are never taken over


def test_released_keys_can_be_claimed_again(sessions):
    ledger = SqlDeliveryLedger(sessions)
    request = order(f"l{uuid.uuid4().hex[:8]}")
    ledger.claim([request])
    ledger.release(list(request.keys))
    assert ledger.claim([request])[0].fresh == (True,)


def test_two_ledgers_claiming_the_same_keys_at_once_start_each_build_once(sessions):
    """Two worker processes' batches overlapping: every key is new for exactly one of them, and
    build numbers never repeat."""
    package = f"l{uuid.uuid4().hex[:8]}"
    keys = [f"ref:{uuid.uuid4().hex}" for _ in range(40)]
    ledgers = [SqlDeliveryLedger(sessions), SqlDeliveryLedger(sessions)]

    def claim_all(index: int) -> list[tuple[str, int]]:
        won = []
        mine = keys[index::2] + keys  # its own half as new batches, then everything again
        for start in range(0, len(mine), 8):
            batch = [order(package, k) for k in mine[start : start + 8]]
            for request, claim in zip(batch, ledgers[index].claim(batch), strict=True):
                if claim.fresh[0]:
                    won.append((request.keys[0], claim.numbers[0]))
        return won

    with ThreadPoolExecutor(2) as pool:
        results = [n for won in pool.map(claim_all, [0, 1]) for n in won]
    assert sorted(k for k, _ in results) == sorted(keys)
    assert sorted(n for _, n in results) == list(range(1, len(keys) + 1))
    with sessions() as session:
        count = session.scalar(
            select(func.count()).where(DeliveryKey.key_hash.in_([key_hash(k) for k in keys]))
        )
    assert count == len(keys)
