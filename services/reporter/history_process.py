"""The history writer in a process of its own.

Decoding, projecting and PyMySQL's escaping are pure Python: run in a thread they share the
GIL with the event loop that decodes and acks the incoming messages, and the two halve each
other. In a child process they use the second core. The child keeps its own engine (built once
by the pool initializer); exceptions cross the process boundary as two plain, picklable kinds.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from services.reporter.history_writer import write_batch
from shared.db import make_engine, make_sessions
from shared.events import Envelope


class DatabaseAway(Exception):
    """The child could not reach the database (connection-level failure): wait and retry."""


class BatchRejected(Exception):
    """The database refused the batch's data: isolate the bad event."""


_sessions: sessionmaker[Session] | None = None


def _start_child(database_url: str) -> None:
    global _sessions
    _sessions = make_sessions(make_engine(database_url))


def _write_in_child(envelopes: list[Envelope]) -> int:
    assert _sessions is not None, "pool initializer did not run"
    try:
        with _sessions() as session:
            return write_batch(session, envelopes)
    except (OperationalError, InterfaceError) as exc:
        raise DatabaseAway(f"{type(exc).__name__}: {exc.orig if exc.orig else exc}") from None
    except Exception as exc:
        raise BatchRejected(f"{type(exc).__name__}: {exc}") from None


def history_process(database_url: str) -> ProcessPoolExecutor:
    """One child: batches are written in order, one transaction at a time."""
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),  # never fork a process running an event loop
        initializer=_start_child,
        initargs=(database_url,),
    )


write_in_child = _write_in_child
