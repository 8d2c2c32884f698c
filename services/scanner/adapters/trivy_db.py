"""Trivy's vulnerability database: is one usable, and fetch it (from a mirror) when missing.

Scans always run with `--skip-db-update`: fetching the database is this module's job, done at
most once per interval, so an offline site pays no per-scan network timeout and a failed fetch
turns into "skipped: no vulnerability database" instead of a crashed scan.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import time
from pathlib import Path

log = logging.getLogger("kiln.scanner")

# After a failed download, do not try again for this long (one attempt per image would be noise).
DOWNLOAD_BACKOFF_S = 600


class TrivyDatabase:
    def __init__(
        self,
        binary: str,
        cache_dir: Path,
        *,
        repository: str | None,
        download: bool,
        timeout_s: float,
    ):
        self.binary = binary
        self.cache_dir = cache_dir
        self.repository = repository
        self.download = download
        self.timeout_s = timeout_s
        self._last_attempt: float | None = None
        self.last_error = ""

    @property
    def db_file(self) -> Path:
        return self.cache_dir / "db" / "trivy.db"

    @property
    def metadata_file(self) -> Path:
        return self.cache_dir / "db" / "metadata.json"

    def present(self) -> bool:
        return self.db_file.is_file() and self.metadata_file.is_file()

    def outdated(self, now: dt.datetime | None = None) -> bool:
        try:
            metadata = json.loads(self.metadata_file.read_text())
            next_update = dt.datetime.fromisoformat(metadata["NextUpdate"].replace("Z", "+00:00"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return True
        return (now or dt.datetime.now(dt.UTC)) >= next_update

    def ensure(self) -> bool:
        """True when a database is usable (possibly out of date after a failed refresh)."""
        if self.present() and not self.outdated():
            return True
        if self.download and self._may_try_now():
            self._fetch()
        return self.present()

    def _may_try_now(self) -> bool:
        return self._last_attempt is None or time.monotonic() - self._last_attempt > DOWNLOAD_BACKOFF_S

    def _fetch(self) -> None:
        self._last_attempt = time.monotonic()
        args = [self.binary, "image", "--download-db-only", "--quiet", "--cache-dir", str(self.cache_dir)]
        if self.repository:
            args += ["--db-repository", self.repository]
        try:
            result = subprocess.run(args, capture_output=True, text=True, timeout=self.timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
        else:
            self.last_error = "" if result.returncode == 0 else _last_line(result.stderr)
        if self.last_error:
            log.warning("trivy vulnerability database not downloaded: %s", self.last_error)


def _last_line(text: str) -> str:
    """Trivy's FATAL message with its continuation lines, the cause (its end) kept."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    fatal = next((i for i, line in enumerate(lines) if "FATAL" in line), max(len(lines) - 1, 0))
    message = " ".join(lines[fatal:]) or "no output"
    return message if len(message) <= 300 else "…" + message[-300:]
