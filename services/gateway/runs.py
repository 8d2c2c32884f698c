"""The run history as the gateway's API and dashboard show it. Every query goes through
shared.history.read_model (the reporter writes those tables; the gateway reads only there)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from shared.history import read_model as history
from shared.history.read_model import STAGE_ORDER, build_logs

__all__ = ["build_detail", "build_logs", "list_builds"]


def list_builds(
    session: Session,
    *,
    package: str | None = None,
    status: str | None = None,
    branch: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    """The API's `branch` filter is the read model's `ref` (both spellings of a branch match)."""
    return history.list_builds(
        session, package=package, status=status, ref=branch, limit=limit, offset=offset
    )


def build_detail(session: Session, build_id: str) -> dict[str, Any] | None:
    """The read model's detail, as the API and dashboard show it: steps in start order within a
    stage (the live timeline), scans as summaries (findings are served per scan, not here)."""
    detail = history.build_detail(session, build_id)
    if detail is None:
        return None
    detail["steps"].sort(key=lambda s: (STAGE_ORDER.get(s["stage"], 99), s["started_at"] or "", s["target"]))
    detail["scans"] = [{k: v for k, v in scan.items() if k != "findings"} for scan in detail["scans"]]
    detail["deploy"] = [s for s in detail["steps"] if s["stage"] in ("deploy", "verify")]
    return detail
