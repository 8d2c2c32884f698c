"""A harness document (core.checks.run_checks) as table rows and chart values."""

from __future__ import annotations


def rows_of(tests: dict) -> list[dict]:
    return [
        {"check": a["name"], "result": "pass" if a["passed"] else "FAIL", "detail": a.get("detail") or ""}
        for a in tests.get("assertions", [])
    ]


def chart_values(tests: dict) -> dict[str, float]:
    return {a["name"]: 100.0 if a["passed"] else 0.0 for a in tests.get("assertions", [])}
