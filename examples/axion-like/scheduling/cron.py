"""Cron expressions `minute hour day month weekday` with `*`, `*/n`, `a-b`, `a,b` (no names)."""

from __future__ import annotations

from datetime import datetime, timedelta

_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_FIELDS = ("minute", "hour", "day", "month", "weekday")


def parse(expression: str) -> tuple[frozenset[int], ...]:
    parts = expression.split()
    if len(parts) != 5:
        raise ValueError(f"a cron expression has 5 fields, {expression!r} has {len(parts)}")
    return tuple(
        _field(part, low, high, name) for part, (low, high), name in zip(parts, _RANGES, _FIELDS, strict=True)
    )


def _field(text: str, low: int, high: int, name: str) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        base, _, step = item.partition("/")
        start, end = (low, high) if base == "*" else _span(base)
        if not (low <= start <= end <= high) or (step and not step.isdigit()):
            raise ValueError(f"cron {name} {item!r} is outside {low}-{high}")
        values.update(range(start, end + 1, int(step or 1)))
    return frozenset(values)


def _span(base: str) -> tuple[int, int]:
    first, _, last = base.partition("-")
    if not first.isdigit() or (last and not last.isdigit()):
        raise ValueError(f"cron field {base!r} is not a number or range")
    return int(first), int(last or first)


def next_fire(expression: str, after: datetime) -> datetime:
    """The first whole minute after `after` that the expression matches (within 4 years)."""
    minutes, hours, days, months, weekdays = parse(expression)
    moment = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(4 * 366 * 24 * 60):
        if (
            moment.month in months
            and moment.day in days
            and (moment.weekday() + 1) % 7 in weekdays
            and moment.hour in hours
            and moment.minute in minutes
        ):
            return moment
        moment += timedelta(minutes=1)
    raise ValueError(f"cron {expression!r} never fires")
