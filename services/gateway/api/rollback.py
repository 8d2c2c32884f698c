"""`POST /packages/{package}/rollback {"to": <number>}`: redeploy an earlier build (`kiln rollback`).

A rollback is a run of its own: a new build id and the package's next build number (the same
counter as builds), trigger kind `rollback`, naming the build it goes back to. The gateway checks
what the run history says (the build exists for this package, it succeeded and its deploy did);
the deployer then redeploys that build's recorded images (by digest, still in the registry,
signed) and config through its normal deploy + verify (services/deployer/rollback.py).
Same auth as starting a build (Bearer token).
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from services.gateway import metrics
from services.gateway.api.db import in_session
from services.gateway.auth import WriteAccess
from services.gateway.deps import Deps
from shared.bus.connection import PublishRefused
from shared.events import Envelope, RollbackRequested
from shared.events.build import Options, Source, Trigger
from shared.history.read_model import rollback_target
from shared.platforms import PLATFORM_NAMES

log = logging.getLogger("kiln.gateway")
router = APIRouter(tags=["builds"])
_PACKAGE = re.compile(r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$")


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: int = Field(ge=1, description="the build number of the package to go back to")


@router.post("/packages/{package}/rollback", status_code=202, dependencies=[WriteAccess])
async def rollback(package: str, body: RollbackRequest, deps: Deps) -> dict[str, Any]:
    if not _PACKAGE.match(package) or len(package) > 63:
        raise HTTPException(404, f"no package {package[:100]!r} in the pipeline config")
    if deps.config is None or package not in deps.config.packages:
        raise HTTPException(404, f"no package {package!r} in the pipeline config")
    target = await in_session(deps, rollback_target, package, body.to)
    if target is None:
        raise HTTPException(
            404, f"package {package!r} has no build #{body.to}; see: kiln builds --package {package}"
        )
    refusal = _refusal(target, body.to)
    if refusal:
        raise HTTPException(409, refusal)
    number = await deps.starter.number(package)
    build_id = str(uuid.uuid4())
    options = target.get("options") or {}
    platforms = tuple(p for p in options.get("platforms") or () if p in PLATFORM_NAMES) or PLATFORM_NAMES
    event = RollbackRequested(
        package=package,
        build_number=number,
        to_build_id=target["build_id"],
        to_number=body.to,
        version=target.get("version"),
        source=Source(
            repo_url=target.get("repo_url") or "",
            ref=target.get("ref") or "",
            commit=target.get("commit_sha") or "",
        ),
        options=Options(platforms=platforms),
        trigger=Trigger(kind="rollback", actor="token"),
    )
    envelope = Envelope.new(event, source="gateway", build_id=build_id, package=package)
    try:
        await deps.publisher.publish(envelope)
    except PublishRefused as exc:  # the gateway's broker user was provisioned before rollbacks
        raise HTTPException(
            403,
            f"the gateway may not publish {exc.key}: provision its broker user again "
            "(`python -m shared.bus provision`, docs/operations.md)",
        ) from None
    except Exception as exc:  # broker unavailable: the caller may retry (the number stays used)
        raise HTTPException(503, f"broker did not confirm: {type(exc).__name__}") from None
    metrics.BUILDS_REQUESTED.labels("rollback").inc()
    log.info("rollback of %s to build #%d (%s) started as build %s #%d", package, body.to,
             target["build_id"], build_id, number)  # fmt: skip
    return {
        "status": "accepted",
        "build_id": build_id,
        "build_number": number,
        "rollback_to": {"build_id": target["build_id"], "build_number": body.to},
    }


def _refusal(target: dict[str, Any], number: int) -> str | None:
    """Why build `number` has no deployable release to go back to (None: it has one)."""
    status = target.get("status")
    if status in ("queued", "running"):
        return f"build #{number} is still {status}: roll back to a build that finished and was deployed"
    if status != "succeeded":
        return (
            f"build #{number} {status}"
            + (f" at {target['failed_stage']}" if target.get("failed_stage") else "")
            + ": only a build that succeeded has a release to go back to"
        )
    if not target.get("deployed"):
        return (
            f"build #{number} was never deployed (skip_deploy or skip_push): it has no release to go back to"
        )
    return None
