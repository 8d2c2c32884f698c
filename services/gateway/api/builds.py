"""The build API: list, detail, events, logs, cancel, replay, diff, registry overview.

Every answer passes shared.redaction: what the run history stored (a `repo_url` with
`user:token@`, a token in a log tail) is masked on the way out, whoever wrote it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import PlainTextResponse

from services.gateway.api.db import in_session
from services.gateway.auth import ReadAccess, WriteAccess
from services.gateway.deps import Deps
from services.gateway.replay import NothingToReplay, replay_envelopes
from services.gateway.runs import build_detail, list_builds
from shared.bus.connection import PublishRefused
from shared.events import BuildCancelRequested, Envelope
from shared.history.read_model import (
    STAGE_TRIGGERS,
    BuildNotFound,
    build_diff,
    build_events,
    build_logs,
    registry_overview,
)
from shared.redaction import REDACT, redact_data

router = APIRouter(tags=["builds"])
BuildStatus = Annotated[str | None, Query(pattern="^(queued|running|succeeded|failed|cancelled)$")]


@router.get("/builds", dependencies=[ReadAccess])
async def get_builds(
    deps: Deps,
    package: Annotated[str | None, Query(max_length=100)] = None,
    status: BuildStatus = None,
    branch: Annotated[str | None, Query(max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    return redact_data(
        await in_session(
            deps, list_builds, package=package, status=status, branch=branch, limit=limit, offset=offset
        )
    )


@router.get("/builds/diff", dependencies=[ReadAccess])
async def get_diff(deps: Deps, a: str, b: str) -> dict[str, Any]:
    try:
        return redact_data(await in_session(deps, build_diff, a, b))
    except BuildNotFound as exc:
        raise HTTPException(404, f"no build {exc}") from None


@router.get("/builds/{build_id}", dependencies=[ReadAccess])
async def get_build(deps: Deps, build_id: str) -> dict[str, Any]:
    detail = await in_session(deps, build_detail, build_id)
    if detail is None:
        raise HTTPException(404, f"no build {build_id}")
    return redact_data(detail)


@router.get("/builds/{build_id}/events", dependencies=[ReadAccess])
async def get_build_events(deps: Deps, build_id: str) -> list[dict[str, Any]]:
    return redact_data(await in_session(deps, build_events, build_id))


@router.get("/builds/{build_id}/logs", dependencies=[ReadAccess], response_class=PlainTextResponse)
async def get_build_logs(deps: Deps, build_id: str) -> str:
    return "\n".join(REDACT(line) for line in await in_session(deps, build_logs, build_id)) + "\n"


@router.post("/builds/{build_id}/cancel", status_code=202, dependencies=[WriteAccess])
async def cancel_build(deps: Deps, build_id: str, reason: str = "cancelled by API") -> dict[str, Any]:
    """Running stages stop at their next stage boundary."""
    detail = await in_session(deps, build_detail, build_id)
    package = detail["build"]["package"] if detail else ""
    envelope = Envelope.new(
        BuildCancelRequested(reason=reason[:500], actor="api"),
        source="gateway",
        build_id=build_id,
        package=package,
    )
    if detail:
        # The cancel stops the attempt running now; a later replay (a newer attempt) runs again.
        envelope = envelope.model_copy(update={"attempt": detail["build"].get("attempt") or 1})
    await _publish(deps, [envelope])
    return {"status": "accepted", "event_id": envelope.id}


@router.post("/builds/{build_id}/replay", status_code=202, dependencies=[WriteAccess])
async def replay_build(
    deps: Deps,
    build_id: str,
    from_stage: Annotated[str | None, Query(alias="from")] = None,
    only: bool = False,
) -> dict[str, Any]:
    """Republish the stored event(s) that started the build, or stage `from`, with `replayof`;
    `only=true`: the new attempt reruns that stage's job and nothing after it."""
    if from_stage is not None and from_stage not in STAGE_TRIGGERS:
        raise HTTPException(422, f"unknown stage {from_stage!r}; one of {', '.join(STAGE_TRIGGERS)}")
    if only and from_stage in (None, "build"):
        raise HTTPException(422, "only=true needs the stage to rerun alone: from=<stage>")
    try:
        envelopes = await in_session(deps, replay_envelopes, build_id, from_stage, only=only)
    except NothingToReplay as exc:
        raise HTTPException(404, str(exc)) from None
    await _publish(deps, envelopes)
    return {
        "status": "accepted",
        "replayed": [
            {"id": e.id, "replayof": e.replayof, "type": e.type, "attempt": e.attempt, "only": e.replayonly}
            for e in envelopes
        ],
    }


@router.get("/registry", dependencies=[ReadAccess])
async def get_registry(deps: Deps, package: str | None = None) -> list[dict[str, Any]]:
    return redact_data(await in_session(deps, registry_overview, package))


async def _publish(deps: Deps, envelopes: list[Envelope]) -> None:
    try:
        for envelope in envelopes:
            await deps.publisher.publish(envelope)
    except PublishRefused as exc:  # the gateway's broker user may not send it: retrying cannot help
        raise HTTPException(
            403,
            f"the gateway may not publish {exc.key} (a replay from this stage republishes it); the "
            "operator grants it with `python -m shared.bus provision --allow-stage-replay`",
        ) from None
    except Exception as exc:  # broker unavailable: the caller may retry
        raise HTTPException(503, f"broker did not confirm: {type(exc).__name__}") from None
