"""Starting a build by hand: `POST /webhook/build` (the seed's body) and `POST /builds`."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.gateway import metrics
from services.gateway.auth import WriteAccess
from services.gateway.deps import Deps
from services.gateway.starter import BuildOrder, PublishFailed
from shared.events.build import Options, Source, Trigger
from shared.naming import PLATFORMS, validate_branch

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
    commit: str = ""
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
        unknown = [p for p in chosen if p not in PLATFORMS]
        if unknown:
            raise HTTPException(422, f"unknown platform(s) {unknown}; use {', '.join(PLATFORMS)}")
        return chosen


class Accepted(BaseModel):
    status: str = "accepted"
    build_ids: list[str]


async def start_manual(body: TriggerRequest, deps: Deps, kind: str) -> Accepted:
    platforms = body.platforms()
    if deps.config is not None:
        if body.package not in deps.config.packages:
            raise HTTPException(404, f"no package {body.package!r} in the pipeline config")
        platforms = platforms or list(deps.config.packages[body.package].deployment.platforms)
    options = Options(
        skip_compile=body.skip_compile,
        skip_push=body.skip_push,
        skip_deploy=body.skip_deploy,
        notify=body.notify,
        **({"platforms": tuple(platforms)} if platforms else {}),
    )
    ref = body.ref or "develop"
    order = BuildOrder(
        package=body.package,
        source=Source(repo_url=body.repo_url, ref=f"refs/heads/{ref}", commit=body.commit),
        options=options,
        trigger=Trigger(kind=kind, actor="token"),  # type: ignore[arg-type]
    )
    try:
        result = await deps.starter.start([order])
    except PublishFailed as exc:
        raise HTTPException(503, str(exc)) from None
    metrics.BUILDS_REQUESTED.labels(kind).inc(len(result.build_ids))
    return Accepted(build_ids=result.build_ids)


@router.post("/webhook/build", status_code=202, dependencies=[WriteAccess])
async def webhook_build(body: TriggerRequest, deps: Deps) -> Accepted:
    """The seed's generic trigger (token-authenticated)."""
    return await start_manual(body, deps, "api")


@router.post("/builds", status_code=202, dependencies=[WriteAccess])
async def trigger_build(body: TriggerRequest, deps: Deps) -> Accepted:
    """Start a build (the CLI's `kiln pipeline`)."""
    return await start_manual(body, deps, "cli")
