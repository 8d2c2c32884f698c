"""Which packages a push builds, and from where: the packages' `webhooks` section of the operator
config. The payload only says which repository and refs changed; the clone URL is the package's
configured source (shared/sources.py), never the payload's."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from services.gateway.webhooks.changes import Push, RefChange
from shared.config import KilnConfig
from shared.naming import validate_branch
from shared.sources import PackageSource, SourceRefused, configured_source, provider_url

# The answer lists at most this many reasons; the rest are counted (a 5,000-ref push stays small).
MAX_REASONS = 20


@dataclass(frozen=True)
class PlannedBuild:
    package: str
    change: RefChange
    source: PackageSource

    @property
    def ref(self) -> str:
        return self.change.ref


@dataclass(frozen=True)
class Route:
    """What the operator configured for this delivery's route."""

    provider: str  # the webhook route the push came in on (github, bitbucket-cloud, ...)
    urls: dict[str, str]  # the provider base URLs (SourceSettings.provider_urls)
    max_refs: int  # refs of one delivery that may start builds (KILN_MAX_REFS_PER_DELIVERY)


def plan_builds(config: KilnConfig, push: Push, route: Route) -> tuple[list[PlannedBuild], list[str]]:
    """(builds to start, reasons for what starts nothing)."""
    skipped: list[str] = []
    sources = _sources(config, push, route, skipped)
    if not sources:
        if not skipped:
            skipped.append(f"repository {push.repository!r} is not configured for any package")
        return [], skipped
    planned: list[PlannedBuild] = []
    refs = 0
    for index, change in enumerate(push.changes):
        reason = _refusal(change)
        if reason:
            skipped.append(reason)
            continue
        matched = [p for p in sources if _wanted(config, p, change)]
        if not matched:
            skipped.append(f"{change.ref}: no package builds this {change.kind}")
            continue
        if refs == route.max_refs:
            rest = len(push.changes) - index
            # First in the list: it must survive `shorten`.
            skipped.insert(
                0,
                f"{rest} more ref change(s) not built: one delivery starts builds for at most "
                f"{route.max_refs} refs (KILN_MAX_REFS_PER_DELIVERY); push them in smaller batches",
            )
            break
        refs += 1
        planned.extend(PlannedBuild(package=p, change=change, source=sources[p]) for p in matched)
    return planned, shorten(skipped)


def _sources(config: KilnConfig, push: Push, route: Route, skipped: list[str]) -> dict[str, PackageSource]:
    """The configured source of every package this push may build; refusals go to `skipped`."""
    found: dict[str, PackageSource] = {}
    for name, package in config.packages.items():
        hooks = package.webhooks
        if not hooks.repository or hooks.repository.lower() != push.repository.lower():
            continue
        if hooks.provider and hooks.provider != route.provider:
            skipped.append(
                f"package {name!r} takes pushes from {hooks.provider} only (webhooks.provider), "
                f"not from {route.provider}"
            )
            continue
        try:
            expected = provider_url(hooks.provider or route.provider, hooks.repository, route.urls)
            claimed = [_comparable(url) for url in push.clone_urls]
            if claimed and _comparable(expected) not in claimed:
                skipped.append(
                    f"package {name!r}: the payload names clone URL {push.clone_urls[0][:200]!r}, not "
                    f"{expected!r}, the configured source of {hooks.repository} (its provider base URL "
                    "is an operator setting, e.g. KILN_GITHUB_URL): ignored"
                )
                continue
            found[name] = configured_source(config, name, route.urls, provider=route.provider)
        except SourceRefused as exc:
            skipped.append(f"package {name!r}: {exc}")
    return found


def _comparable(url: str) -> str:
    """host/path of a clone URL without user info, scheme, case, trailing slash or `.git`: the
    same repository whether the payload says http or https."""
    parts = urlsplit(url.strip())
    host = parts.netloc.rpartition("@")[2]
    path = parts.path.rstrip("/").removesuffix(".git")
    return urlunsplit(("", host, path, "", "")).lower()


def shorten(reasons: list[str]) -> list[str]:
    if len(reasons) <= MAX_REASONS:
        return reasons
    return [*reasons[:MAX_REASONS], f"... and {len(reasons) - MAX_REASONS} more"]


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
