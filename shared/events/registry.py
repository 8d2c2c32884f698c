"""The catalogue: every event model Kiln knows, looked up by CloudEvents type."""

from __future__ import annotations

from shared.events.base import Event
from shared.events.build import (
    BuildCancelRequested,
    BuildFinished,
    BuildRequested,
    BuildWaiting,
    StageFinished,
    StageStarted,
)
from shared.events.compile import CompileCompleted, ImageRequested
from shared.events.deploy import DeployCompleted, RollbackRequested, VerifyCompleted
from shared.events.image import ImageFailed, ImagePushed, ManifestPushed
from shared.events.scan import AuditCompleted, ScanCompleted

CATALOGUE: tuple[type[Event], ...] = (
    BuildRequested,
    BuildWaiting,
    StageStarted,
    StageFinished,
    BuildCancelRequested,
    BuildFinished,
    CompileCompleted,
    ImageRequested,
    ImagePushed,
    ImageFailed,
    ManifestPushed,
    ScanCompleted,
    AuditCompleted,
    DeployCompleted,
    VerifyCompleted,
    RollbackRequested,
)

_BY_TYPE: dict[str, type[Event]] = {model.ce_type(): model for model in CATALOGUE}


def model_for_type(ce_type: str) -> type[Event] | None:
    return _BY_TYPE.get(ce_type)
