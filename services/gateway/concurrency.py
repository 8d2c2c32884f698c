"""Concurrency groups: at most `limit` builds of one package and branch run at once.

A group is (package, branch); its policy is the package's operator config (`concurrency:`), else
KILN_CONCURRENCY_LIMIT / KILN_CONCURRENCY_MODE. When a new build finds every slot taken:

- `queue`: it is held (`build.waiting`, naming the build it waits behind) and started, first in
  first out, when a slot frees: any build.finished of the group, whatever its status.
- `supersede`: it starts, and the group's oldest running build is cancelled at its next stage
  boundary (`build.cancel.requested`, reason `superseded by build <id> (#<n>)`).

The state is the gateway's own tables (models.ConcurrencyGroup/ConcurrencySlot), so a held build
survives a gateway restart and a broker outage. Every decision about a group is one transaction
holding the group's row lock: replicas and worker processes admit and release one at a time.
Builds are locked in group-hash order, so two batches never deadlock each other.

This module is the store (synchronous, run in threads); concurrency_handlers.py is the bus side.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.mysql import insert as upsert
from sqlalchemy.orm import Session, sessionmaker

from services.gateway.models import ConcurrencyGroup, ConcurrencySlot
from shared.platforms import branch_of

QUEUE, SUPERSEDE = "queue", "supersede"
WAITING, STARTING, RUNNING, SUPERSEDED, CANCELLED = (
    "waiting",
    "starting",
    "running",
    "superseded",
    "cancelled",
)
# States that hold one of the group's slots (a superseded build is on its way out: not counted).
ACTIVE = (STARTING, RUNNING)
_IDS = uuid.UUID("0c6f2a8e-3b1d-4f7a-9e55-7d1c2b3a4f60")


@dataclass(frozen=True)
class Policy:
    limit: int  # 0: no group
    mode: str = QUEUE


@dataclass(frozen=True)
class Candidate:
    """A numbered build the starter is about to publish."""

    build_id: str
    package: str
    ref: str
    build_number: int | None
    request: dict[str, Any]  # its build.requested data, kept while it is held
    policy: Policy


@dataclass
class Admission:
    build_id: str
    start: bool = True
    waiting_on: tuple[str, int | None] | None = None  # the running build it is held behind
    superseded: list[tuple[str, str]] = field(default_factory=list)  # (build id, package) to cancel
    reason: str = ""  # the cancel reason of the builds it supersedes
    limit: int = 0


@dataclass(frozen=True)
class Release:
    """A held build whose turn came: publish its build.requested (event id `requested_id`)."""

    build_id: str
    package: str
    request: dict[str, Any]


def group_of(package: str, ref: str) -> tuple[str, str]:
    """(group hash, branch): `refs/heads/main` and `main` are one group; a tag is its own."""
    branch = branch_of(ref)
    return hashlib.sha256(f"{package}\n{branch}".encode()).hexdigest(), branch


def requested_id(build_id: str) -> str:
    """The build.requested event id of a grouped build: the same whoever publishes it (the
    starter, a release, the sweep's republish), so consumers' guards see one event."""
    return str(uuid.uuid5(_IDS, f"{build_id}/requested"))


def waiting_id(build_id: str) -> str:
    return str(uuid.uuid5(_IDS, f"{build_id}/waiting"))


def superseded_reason(build_id: str, number: int | None) -> str:
    return f"superseded by build {build_id} (#{number})"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class ConcurrencyStore:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        policy_of: Callable[[str], Policy],
        *,
        republish_after_s: float = 60.0,
    ):
        self._sessions = sessions
        self.policy_of = policy_of
        self._republish_after_s = republish_after_s

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """READ COMMITTED: each statement reads what is committed now (one REPEATABLE READ
        snapshot for a whole batch would miss a group's rows committed by another replica after
        the batch began), and no gap locks between neighbouring groups. The group row's lock is
        what serialises decisions."""
        with self._sessions() as session:
            session.connection(execution_options={"isolation_level": "READ COMMITTED"})
            yield session

    # -- admission (the starter, before publishing) ----------------------------------------------

    def admit(self, candidates: list[Candidate]) -> list[Admission]:
        answers: dict[str, Admission] = {}
        grouped = [c for c in candidates if c.policy.limit > 0]
        for c in candidates:
            if c.policy.limit == 0:
                answers[c.build_id] = Admission(c.build_id)
        with self._session() as session:
            for c in sorted(grouped, key=lambda c: group_of(c.package, c.ref)[0]):
                answers[c.build_id] = self._admit_one(session, c)
            session.commit()
        return [answers[c.build_id] for c in candidates]

    def _admit_one(self, session: Session, c: Candidate) -> Admission:
        group = self._lock(session, c.package, c.ref)
        active = self._slots(session, group, ACTIVE)
        limit, now = c.policy.limit, _now()
        answer = Admission(c.build_id, limit=limit)
        state = STARTING
        if len(active) >= limit and c.policy.mode == SUPERSEDE:
            answer.reason = superseded_reason(c.build_id, c.build_number)
            for old in active[: len(active) - limit + 1]:
                old.state, old.note, old.updated_at = SUPERSEDED, answer.reason, now
                answer.superseded.append((old.build_id, old.package))
        elif len(active) >= limit or (queued := self._slots(session, group, (WAITING,))):
            # Full, or others wait already (a slot just freed, its release not yet done): behind
            # them, first in first out.
            state, answer.start = WAITING, False
            ahead = active[0] if active else queued[0]
            answer.waiting_on = (ahead.build_id, ahead.build_number)
        session.add(
            ConcurrencySlot(
                build_id=c.build_id,
                group_hash=group,
                package=c.package,
                build_number=c.build_number,
                state=state,
                request=c.request,
                created_at=now,
                updated_at=now,
            )
        )
        session.flush()
        return answer

    def started(self, build_ids: list[str]) -> None:
        """Their build.requested was confirmed."""
        if build_ids:
            with self._session() as session:
                session.execute(
                    update(ConcurrencySlot)
                    .where(ConcurrencySlot.build_id.in_(build_ids), ConcurrencySlot.state == STARTING)
                    .values(state=RUNNING, request=None, updated_at=_now())
                )
                session.commit()

    def withdraw(self, build_id: str, *, held: bool) -> tuple[bool, str | None]:
        """The starter's publish failed (the sender will retry): forget the build. (withdrawn,
        group): not withdrawn when a release already took the held build (its build.requested
        is out: it did start). A withdrawn started build may have held others back: the caller
        releases the group."""
        with self._session() as session:
            group = session.scalar(
                select(ConcurrencySlot.group_hash).where(ConcurrencySlot.build_id == build_id)
            )
            if group is None:
                return True, None
            self._lock_hash(session, group)
            gone = session.execute(
                delete(ConcurrencySlot).where(
                    ConcurrencySlot.build_id == build_id,
                    ConcurrencySlot.state.in_((WAITING,) if held else ACTIVE),
                )
            ).rowcount
            # What it superseded was not cancelled (the cancels follow a confirmed start): running.
            session.execute(
                update(ConcurrencySlot)
                .where(
                    ConcurrencySlot.group_hash == group,
                    ConcurrencySlot.state == SUPERSEDED,
                    ConcurrencySlot.note.like(f"superseded by build {build_id} %"),
                )
                .values(state=RUNNING, note=None)
            )
            session.commit()
            return gone == 1, group

    # -- a build ended, or was cancelled while held ----------------------------------------------

    def finish(self, build_id: str) -> str | None:
        """Its build.finished arrived: free its slot. The group's hash, or None if it had none."""
        with self._session() as session:
            group = session.scalar(
                select(ConcurrencySlot.group_hash).where(ConcurrencySlot.build_id == build_id)
            )
            if group is not None:
                session.execute(delete(ConcurrencySlot).where(ConcurrencySlot.build_id == build_id))
                session.commit()
            return group

    def cancel_waiting(self, build_id: str, reason: str) -> bool:
        """A cancel of a held build: it is never released and frees nothing (the row stays,
        cancelled, until its build.finished). False: not held (running, or not grouped)."""
        with self._session() as session:
            cancelled = session.execute(
                update(ConcurrencySlot)
                .where(ConcurrencySlot.build_id == build_id, ConcurrencySlot.state == WAITING)
                .values(state=CANCELLED, note=reason[:500], updated_at=_now())
            ).rowcount
            session.commit()
            return cancelled == 1

    def release(self, group: str) -> list[Release]:
        """Start the group's oldest held builds into its free slots: the builds to publish now.
        Besides those just taken, a release left unconfirmed longer than `republish_after_s` (the
        process died before the broker's confirm) is taken again; a younger one is left to the
        process publishing it, so two handlers never publish one build at once."""
        now = _now()
        stale = now - timedelta(seconds=self._republish_after_s)
        with self._session() as session:
            row = self._lock_hash(session, group)
            if row is None:
                return []
            limit = self.policy_of(row.package).limit
            active = self._slots(session, group, ACTIVE)
            take = [s for s in active if s.state == STARTING and s.updated_at < stale]
            if limit == 0 or len(active) < limit:
                waiting = self._slots(session, group, (WAITING,))
                take += waiting if limit == 0 else waiting[: limit - len(active)]
            for slot in take:
                slot.state, slot.updated_at = STARTING, now
            session.commit()
            return [Release(s.build_id, s.package, s.request or {}) for s in take]

    # -- the sweep (a missed build.finished, an interrupted release) -----------------------------

    def groups_to_check(self) -> list[str]:
        """Groups with held builds, or with a release not confirmed for `republish_after_s`."""
        old = _now() - timedelta(seconds=self._republish_after_s)
        with self._session() as session:
            rows = session.execute(
                select(ConcurrencySlot.group_hash)
                .where(
                    (ConcurrencySlot.state == WAITING)
                    | ((ConcurrencySlot.state == STARTING) & (ConcurrencySlot.updated_at < old))
                )
                .distinct()
            )
            return list(rows.scalars())

    def open_builds(self) -> list[str]:
        """Builds holding a slot (or on their way out): the sweep asks the history which ended."""
        with self._session() as session:
            states = (*ACTIVE, SUPERSEDED)
            return list(
                session.scalars(select(ConcurrencySlot.build_id).where(ConcurrencySlot.state.in_(states)))
            )

    def in_flight(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """{(package, ref): builds held, starting or running}: exact as of the last commit, where
        the run history's count trails build.requested by the reporter's lag (limits.py)."""
        counts = {}
        with self._session() as session:
            for package, ref in set(keys):
                counts[(package, ref)] = len(
                    self._slots(session, group_of(package, ref)[0], (WAITING, *ACTIVE))
                )
        return counts

    def waiting(self, package: str, ref: str) -> list[ConcurrencySlot]:
        with self._session() as session:
            rows = self._slots(session, group_of(package, ref)[0], (WAITING,))
            session.expunge_all()
            return rows

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _lock(session: Session, package: str, ref: str) -> str:
        group, branch = group_of(package, ref)
        table = ConcurrencyGroup.__table__
        session.execute(
            upsert(table)
            .values(group_hash=group, package=package, branch=branch[:255])
            .on_duplicate_key_update(package=table.c.package)
        )
        ConcurrencyStore._lock_hash(session, group)
        return group

    @staticmethod
    def _lock_hash(session: Session, group: str) -> ConcurrencyGroup | None:
        return session.scalar(
            select(ConcurrencyGroup).where(ConcurrencyGroup.group_hash == group).with_for_update()
        )

    @staticmethod
    def _slots(session: Session, group: str, states: tuple[str, ...]) -> list[ConcurrencySlot]:
        return list(
            session.scalars(
                select(ConcurrencySlot)
                .where(ConcurrencySlot.group_hash == group, ConcurrencySlot.state.in_(states))
                .order_by(ConcurrencySlot.id)
            )
        )


def policy_reader(config: Any, default: Policy) -> Callable[[str], Policy]:
    """The package's `concurrency:` section over the gateway's default (operator config only)."""

    def policy_of(package: str) -> Policy:
        section = getattr(config.packages.get(package), "concurrency", None) if config else None
        if section is None:
            return default
        limit = default.limit if section.limit is None else section.limit
        return Policy(limit, section.mode or default.mode)

    return policy_of
