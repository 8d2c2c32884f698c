"""Counters and latency samples, exposed in the Prometheus text format."""

from __future__ import annotations

import math
import threading
from collections import defaultdict, deque


class Registry:
    def __init__(self, window: int = 1024) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, float] = defaultdict(float)
        self.samples: dict[str, deque] = defaultdict(lambda: deque(maxlen=window))

    def count(self, name: str, by: float = 1.0) -> None:
        with self._lock:
            self.counters[name] += by

    def observe(self, name: str, seconds: float) -> None:
        with self._lock:
            self.samples[name].append(seconds)

    def exposition(self) -> str:
        with self._lock:
            lines = [f"{name}_total {value:g}" for name, value in sorted(self.counters.items())]
            for name, values in sorted(self.samples.items()):
                for q in (0.5, 0.9, 0.99):
                    lines.append(f'{name}_seconds{{quantile="{q}"}} {percentile(list(values), q):g}')
        return "\n".join(lines) + "\n"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; 0 for no samples."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered))))
    return ordered[rank - 1]
