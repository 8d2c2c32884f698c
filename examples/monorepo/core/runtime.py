"""Process plumbing for the example services: mounted config, keys, a stoppable loop."""

from __future__ import annotations

import importlib.machinery
import json
import os
import signal
import sys
import threading
from pathlib import Path


def is_compiled() -> bool:
    """True when this factory runs as Cython-compiled extension modules rather than source.

    The compiler may set `core._COMPILED`; without it, look at how this module was loaded.
    """
    marker = getattr(sys.modules["core"], "_COMPILED", None)
    if marker is not None:
        return bool(marker)
    return any(__file__.endswith(suffix) for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def load_service_config() -> dict:
    """The trimmed package config mounted at $KILN_CONFIG (JSON), or {} when not mounted."""
    path = os.environ.get("KILN_CONFIG")
    if not path or not Path(path).is_file():
        return {}
    return json.loads(Path(path).read_text(encoding="utf-8"))


def keys_dir() -> Path | None:
    """Directory holding the package's PEM keys, mounted at run time ($KILN_KEYS_DIR)."""
    value = os.environ.get("KILN_KEYS_DIR")
    return Path(value) if value else None


def feature_enabled(config: dict, name: str, default: bool = False) -> bool:
    return bool(config.get("features", {}).get(name, default))


class StopFlag:
    """Set by SIGTERM/SIGINT so a worker loop ends cleanly with exit code 0."""

    def __init__(self) -> None:
        self._event = threading.Event()
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)

    def _stop(self, _signum: int, _frame: object) -> None:
        self._event.set()

    @property
    def stopped(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if asked to stop meanwhile."""
        return self._event.wait(seconds)


def log(service: str, message: str) -> None:
    print(f"[{service}] {message}", flush=True)
