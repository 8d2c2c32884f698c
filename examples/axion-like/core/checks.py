"""Self-checks a service runs on /status: real calls into its factories, as the JSON harness
Kiln's verify reads (`tests.summary.pass_rate`, `tests.assertions[]`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[], object]
    expected: object


def run_checks(checks: list[Check]) -> dict:
    """{"summary": {...}, "assertions": [...]}; a check that raises counts as failed."""
    assertions = []
    for check in checks:
        started = time.perf_counter()
        try:
            actual = check.run()
            passed = actual == check.expected
            detail = None if passed else f"expected {check.expected!r}, got {actual!r}"
        except Exception as exc:  # a broken factory must show up as a failed check, not a 500
            passed, detail = False, f"{type(exc).__name__}: {exc}"
        assertions.append(
            {
                "name": check.name,
                "passed": passed,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "detail": detail,
            }
        )
    total = len(assertions)
    passed_count = sum(a["passed"] for a in assertions)
    return {
        "summary": {
            "total": total,
            "passed": passed_count,
            "pass_rate": round(100.0 * passed_count / total, 1) if total else 0.0,
        },
        "assertions": assertions,
    }
