"""Documents by kind and key in sqlite: one file per service, in its volume when it has one."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from core import jsonio


class RecordStore:
    def __init__(self, path: Path | str = ":memory:") -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._lock = threading.Lock()  # the HTTP threads and the worker loop share one connection
        with self._lock, self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS record (kind TEXT, key TEXT, doc BLOB, PRIMARY KEY (kind, key))"
            )

    def put(self, kind: str, key: str, doc: dict) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO record VALUES (?, ?, ?)"
                " ON CONFLICT (kind, key) DO UPDATE SET doc = excluded.doc",
                (kind, key, jsonio.dumps(doc)),
            )

    def get(self, kind: str, key: str) -> dict | None:
        with self._lock:
            row = self._db.execute(
                "SELECT doc FROM record WHERE kind = ? AND key = ?", (kind, key)
            ).fetchone()
        return jsonio.loads(row[0]) if row else None

    def count(self, kind: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM record WHERE kind = ?", (kind,)).fetchone()[0]
