"""Render rows as a plain-text table."""

from __future__ import annotations

from tabulate import tabulate

from core.text import slugify


def render_table(title: str, rows: list[dict]) -> str:
    """A titled grid table; columns come from the first row's keys."""
    if not rows:
        return f"{title}\n(no rows)"
    headers = list(rows[0])
    body = tabulate([[row.get(h, "") for h in headers] for row in rows], headers, tablefmt="grid")
    return f"{title} [{slugify(title)}]\n{body}"
