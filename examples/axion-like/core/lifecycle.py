"""Process plumbing: a stop flag for SIGTERM, log lines, whether this code runs compiled."""

from __future__ import annotations

import importlib.machinery
import signal
import sys
import threading


class StopFlag:
    """Set by SIGTERM/SIGINT so a service ends cleanly with exit code 0."""

    def __init__(self) -> None:
        self._event = threading.Event()
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)

    def _stop(self, _signum: int, _frame: object) -> None:
        self._event.set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if asked to stop meanwhile."""
        return self._event.wait(seconds)


def log(service: str, message: str) -> None:
    print(f"[{service}] {message}", flush=True)


def is_compiled() -> bool:
    """True when core runs as Cython-compiled extension modules rather than source."""
    return any(__file__.endswith(suffix) for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def python_tag() -> str:
    return f"cp{sys.version_info.major}{sys.version_info.minor}"
