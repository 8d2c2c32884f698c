"""Starting a build by hand: `POST /webhook/build` (the seed's body) and `POST /builds`.

The build's source is the package's configured one (shared/sources.py): a `repo_url` in the
body is refused (422) unless it is that very URL; `commit` is a full 40-hex id or absent, and
absent it is resolved with `git ls-remote` against the configured source when that answers
(else the compiler fetches the branch tip).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.gateway import metrics
from services.gateway.auth import WriteAccess
from services.gateway.deps import Deps
from services.gateway.limits import within_branch_limit
from services.gateway.starter import BuildOrder, PublishFailed
from shared.events.build import Options, Source, Trigger
from shared.git_source import FetchFailed, GitSource
from shared.naming import validate_branch
from shared.platforms import PLATFORM_NAMES, ref_of
from shared.sources import PackageSource, SourceRefused, configured_source

log = logging.getLogger("kiln.gateway")
# `git ls-remote` of the configured source: a source that does not answer in time leaves the
# commit to the compiler (it fetches the branch tip).
RESOLVE_TIMEOUT_S = 10.0

router = APIRouter(tags=["builds"])
_PACKAGE = re.compile(r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$")
_NOTIFY = re.compile(r"^(raci|[^@\s<>\"',;]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)$")


class TriggerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    package: Annotated[str, Field(max_length=100)]
    notify: str | None = None
    # "linux/amd64,linux/arm64" (the seed's form) or a list; empty means the package's platforms.
    platform: str | list[str] | None = None
    skip_compile: bool = False
    skip_push: bool = False
    skip_deploy: bool = False
    ref: str | None = None
    commit: Annotated[str, Field(pattern=r"^([0-9a-f]{40})?$")] = ""
    # Only the package's configured source is accepted (kept for the seed's body shape).
    repo_url: str = ""

    @field_validator("package")
    @classmethod
    def _package_name(cls, value: str) -> str:
        if not _PACKAGE.match(value):
            raise ValueError("package must be a lowercase name: [a-z0-9], with '-' or '_' only inside")
        return value

    @field_validator("notify")
    @classmethod
    def _notify(cls, value: str | None) -> str | None:
        if value is not None and not _NOTIFY.match(value):
            raise ValueError("notify must be an email address or 'raci'")
        return value

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        return None if value is None else validate_branch(value)

    def platforms(self) -> list[str]:
        raw = self.platform if isinstance(self.platform, list) else (self.platform or "").split(",")
        chosen = [p.strip() for p in raw if p.strip()]
        unknown = [p for p in chosen if p not in PLATFORM_NAMES]
        if unknown:
            raise HTTPException(422, f"unknown platform(s) {unknown}; use {', '.join(PLATFORM_NAMES)}")
        return chosen


class Accepted(BaseModel):
    status: str = "accepted"
    build_ids: list[str]


@dataclass(frozen=True)
class ManualBuild:
    package: str
    ref: str


async def start_manual(body: TriggerRequest, deps: Deps, kind: str) -> Accepted:
    platforms = body.platforms()
    if deps.config is None:
        raise HTTPException(503, "no pipeline config loaded (KILN_CONFIG_PATH): no package has a source")
    if body.package not in deps.config.packages:
        raise HTTPException(404, f"no package {body.package!r} in the pipeline config")
    platforms = platforms or list(deps.config.packages[body.package].deployment.platforms)
    try:
        source = configured_source(deps.config, body.package, deps.settings.provider_urls())
    except SourceRefused as exc:
        raise HTTPException(422, str(exc)) from None
    if body.repo_url and body.repo_url != source.url:
        raise HTTPException(
            422,
            f"repo_url: builds of {body.package!r} come from its configured source only "
            f"(packages.{body.package}.webhooks in the operator config); leave repo_url out",
        )
    branches = list(deps.config.packages[body.package].webhooks.branches)
    ref = ref_of(body.ref) if body.ref else await default_branch(source, branches)
    commit = body.commit or await resolve_commit(source, ref)
    try:
        _, over = await within_branch_limit(deps, [ManualBuild(body.package, ref)])
    except Exception as exc:  # the run history is unreachable: retryable
        raise HTTPException(503, f"try again later ({type(exc).__name__})") from None
    if over:
        raise HTTPException(429, over[0])
    options = Options(
        skip_compile=body.skip_compile,
        skip_push=body.skip_push,
        skip_deploy=body.skip_deploy,
        notify=body.notify,
        **({"platforms": tuple(platforms)} if platforms else {}),
    )
    order = BuildOrder(
        package=body.package,
        source=Source(repo_url=source.url, ref=ref, commit=commit),
        options=options,
        trigger=Trigger(kind=kind, actor="token"),  # type: ignore[arg-type]
    )
    try:
        result = await deps.starter.start([order])
    except PublishFailed as exc:
        raise HTTPException(503, str(exc)) from None
    metrics.BUILDS_REQUESTED.labels(kind).inc(len(result.build_ids))
    return Accepted(build_ids=result.build_ids)


FALLBACK_BRANCH = "develop"


async def default_branch(source: PackageSource, branches: list[str]) -> str:
    """No ref given: the branch the configured source's HEAD names (its default branch, as a clone
    checks out). A source the gateway cannot ask (a private repository: it holds no token) falls
    back to the first branch the package's webhooks.branches names literally, else develop (the
    seed's default branch: what this API built before it read HEAD)."""
    git = GitSource(timeout_s=RESOLVE_TIMEOUT_S, transports=(source.transport,))
    try:
        branch = await to_thread.run_sync(git.default_branch, source)
    except FetchFailed as exc:
        log.info("could not read the default branch of %s: %s", source.package, exc)
        branch = None
    if branch is not None:
        return branch
    literal = next((b for b in branches if not any(c in b for c in "*?[")), FALLBACK_BRANCH)
    return ref_of(literal)


async def resolve_commit(source: PackageSource, ref: str) -> str:
    """The commit `ref` is at in the configured source; "" when the source cannot be asked (no
    token here: a private repository is resolved by the compiler). 422 when the ref is missing."""
    git = GitSource(timeout_s=RESOLVE_TIMEOUT_S, transports=(source.transport,))
    try:
        commit = await to_thread.run_sync(git.ls_remote, source, ref)
    except FetchFailed as exc:
        log.info("could not resolve %s of %s (the compiler fetches the branch): %s", ref, source.package, exc)
        return ""
    if commit is None:
        raise HTTPException(422, f"ref: {ref} does not exist in {git.clean(source.url)}")
    return commit


@router.post("/webhook/build", status_code=202, dependencies=[WriteAccess])
async def webhook_build(body: TriggerRequest, deps: Deps) -> Accepted:
    """The seed's generic trigger (token-authenticated)."""
    return await start_manual(body, deps, "api")


@router.post("/builds", status_code=202, dependencies=[WriteAccess])
async def trigger_build(body: TriggerRequest, deps: Deps) -> Accepted:
    """Start a build (the CLI's `kiln pipeline`)."""
    return await start_manual(body, deps, "cli")
