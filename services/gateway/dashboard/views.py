"""Dashboard pages. Data comes from the same queries as the JSON API, masked the same way
(shared.redaction); templates only lay it out."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from services.gateway.api.db import in_session
from services.gateway.auth import ReadAccess
from services.gateway.deps import Deps
from services.gateway.runs import build_detail, build_logs, list_builds
from services.gateway.settings import GatewaySettings, is_loopback_host, secret_variable, unsigned_variable
from shared import history
from shared.db.models import MANIFEST_PLATFORM
from shared.history import BuildNotFound, build_diff
from shared.platforms import branch_of
from shared.redaction import redact_data
from shared.report import render_html, report_view
from shared.report.audit_view import audit_rows, audit_verdict
from shared.stages import label_of

HERE = Path(__file__).parent


def security_warnings(request: Request) -> dict[str, Any]:
    """What an operator opted out of, on every page (base.html): nobody should miss it."""
    return {"security_warnings": insecure_choices(request.app.state.deps.settings)}


def insecure_choices(settings: GatewaySettings) -> list[str]:
    warnings = [
        f"{provider} webhooks are accepted unsigned ({unsigned_variable(provider)}=true): anyone who "
        f"reaches this gateway can start its builds. Set {secret_variable(provider)} instead."
        for provider in settings.unsigned_providers()
    ]
    if not settings.reads_require_token() and not is_loopback_host(settings.host):
        warnings.append(
            f"Reads need no token although the gateway listens on {settings.host} "
            "(KILN_READ_REQUIRES_TOKEN=false): builds, events and logs are public."
        )
    return warnings


templates = Jinja2Templates(directory=HERE / "templates", context_processors=[security_warnings])
INDEX_SIZE_NOTE = "an index is a few hundred bytes itself: its size here is the sum of its platform images"


def mb(size: int | None) -> str:
    return "\N{EN DASH}" if size is None else f"{size / 1_000_000:.1f} MB"  # unknown is not zero


templates.env.filters["mb"] = mb
templates.env.filters["secs"] = lambda ms: "" if ms is None else f"{ms / 1000:.1f}s"
templates.env.filters["short"] = lambda value: (value or "")[:8]
templates.env.filters["branch"] = lambda ref: branch_of(ref or "")
templates.env.filters["label"] = lambda stage: label_of(stage) if stage else ""
static = StaticFiles(directory=HERE / "static")
router = APIRouter(include_in_schema=False, dependencies=[ReadAccess])


@router.get("/", response_class=HTMLResponse)
async def builds_page(
    request: Request,
    deps: Deps,
    package: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> HTMLResponse:
    listing = redact_data(
        await in_session(
            deps,
            list_builds,
            package=package or None,
            status=status or None,
            limit=50,
            offset=(page - 1) * 50,
        )
    )
    context = {"listing": listing, "package": package or "", "status": status or "", "page": page}
    return templates.TemplateResponse(request, "builds.html", context)


@router.get("/ui/builds/{build_id}", response_class=HTMLResponse)
async def build_page(request: Request, deps: Deps, build_id: str) -> HTMLResponse:
    detail = redact_data(await in_session(deps, build_detail, build_id))
    if detail is None:
        raise HTTPException(404, f"no build {build_id}")
    logs = redact_data(await in_session(deps, build_logs, build_id))
    context = {**detail, "timeline": timeline(detail), "image_grid": image_grid(detail), "logs": logs}
    context["audit_rows"] = audit_rows(detail["audits"])
    context["audit_verdict"] = audit_verdict(context["audit_rows"])
    return templates.TemplateResponse(request, "build.html", context)


@router.get("/ui/builds/{build_id}/report", response_class=HTMLResponse)
async def report_page(request: Request, deps: Deps, build_id: str) -> HTMLResponse:
    """The build's report, exactly as mailed (same view and templates: shared.report)."""
    detail = redact_data(await in_session(deps, history.build_detail, build_id))
    if detail is None:
        raise HTTPException(404, f"no build {build_id}")
    page_url = str(request.url_for("build_page", build_id=build_id))
    return HTMLResponse(render_html(report_view(detail, build_url=page_url)))


@router.get("/ui/diff", response_class=HTMLResponse)
async def diff_page(request: Request, deps: Deps, a: str, b: str) -> HTMLResponse:
    try:
        diff = redact_data(await in_session(deps, build_diff, a, b))
    except BuildNotFound as exc:
        raise HTTPException(404, f"no build {exc}") from None
    return templates.TemplateResponse(request, "diff.html", {"diff": diff})


def timeline(detail: dict[str, Any]) -> list[dict[str, Any]]:
    """Steps as bars: left offset and width in percent of the build's wall time."""
    steps = [s for s in detail["steps"] if s.get("started_at")]
    if not steps:
        return []
    starts = [datetime.fromisoformat(s["started_at"]) for s in steps]
    ends = [
        datetime.fromisoformat(s["finished_at"]) if s.get("finished_at") else start
        for s, start in zip(steps, starts, strict=True)
    ]
    origin, end = min(starts), max(ends)
    total = max((end - origin).total_seconds(), 0.001)
    bars = []
    for step, start, stop in zip(steps, starts, ends, strict=True):
        left = (start - origin).total_seconds() / total * 100
        width = max((stop - start).total_seconds() / total * 100, 0.8)
        bar = {"left": round(left, 2), "width": round(min(width, 100 - left), 2)}
        bars.append({**step, **bar, "label": label_of(step["stage"])})
    return bars


def image_grid(detail: dict[str, Any]) -> dict[str, Any]:
    """Images per service (rows) by platform (columns), with the scan of the same image. The
    multi-arch index column (last) shows the sum of the platform images, itemised in a tooltip."""
    scans = {(s["target"], s["platform"]): s for s in detail["scans"]}
    platforms = sorted({i["platform"] for i in detail["images"]}, key=lambda p: (p == MANIFEST_PLATFORM, p))
    rows: dict[str, dict[str, Any]] = {}
    for image in detail["images"]:
        cell = {**image, "scan": scans.get((image["target"], image["platform"]))}
        if image["platform"] == MANIFEST_PLATFORM:
            parts = [f"{p} {mb(size)}" for p, size in (image.get("platform_sizes") or {}).items()]
            cell["size_bytes"] = image.get("platforms_size_bytes")
            cell["size_title"] = f"{' + '.join(parts) or 'no platform image pushed'} ({INDEX_SIZE_NOTE})"
        rows.setdefault(image["target"], {})[image["platform"]] = cell
    return {"platforms": platforms, "rows": rows, "index": MANIFEST_PLATFORM, "index_note": INDEX_SIZE_NOTE}
