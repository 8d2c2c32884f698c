"""Which packages a push builds: the packages' `webhooks` section of the pipeline config."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from services.gateway.webhooks.changes import Push, RefChange
from shared.config import KilnConfig
from shared.naming import validate_branch


@dataclass(frozen=True)
class PlannedBuild:
    package: str
    change: RefChange


def plan_builds(config: KilnConfig, push: Push) -> tuple[list[PlannedBuild], list[str]]:
    """(builds to start, reasons for the refs that start nothing)."""
    planned: list[PlannedBuild] = []
    skipped: list[str] = []
    packages = [
        name
        for name, package in config.packages.items()
        if package.webhooks.repository and package.webhooks.repository.lower() == push.repository.lower()
    ]
    if not packages:
        return [], [f"repository {push.repository!r} is not configured for any package"]
    for change in push.changes:
        reason = _refusal(change)
        if reason:
            skipped.append(reason)
            continue
        matched = [p for p in packages if _wanted(config, p, change)]
        if not matched:
            skipped.append(f"{change.ref}: no package builds this {change.kind}")
        planned.extend(PlannedBuild(package=p, change=change) for p in matched)
    return planned, skipped


def _refusal(change: RefChange) -> str | None:
    if change.deleted:
        return f"{change.ref}: deleted"
    try:
        validate_branch(change.name)
    except ValueError as exc:
        return f"{change.ref}: {exc}"
    if not _is_commit_hash(change.commit):
        return f"{change.ref}: commit {change.commit[:80]!r} is not a hex hash"
    return None


def _wanted(config: KilnConfig, package: str, change: RefChange) -> bool:
    hooks = config.packages[package].webhooks
    if change.kind == "tag":
        return hooks.tags
    return any(fnmatch.fnmatchcase(change.name, pattern) for pattern in hooks.branches)


def _is_commit_hash(value: str) -> bool:
    return 7 <= len(value) <= 64 and all(c in "0123456789abcdefABCDEF" for c in value)
