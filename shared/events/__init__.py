"""The event contract: the CloudEvents envelope and one module per event family."""

from shared.events.base import Event
from shared.events.build import (
    STAGES,
    BuildCancelRequested,
    BuildFinished,
    BuildRequested,
    BuildWaiting,
    StageFinished,
    StageStarted,
)
from shared.events.compile import CompileCompleted, ImageRequested, arch_of
from shared.events.deploy import DeployCompleted, RollbackRequested, VerifyCompleted
from shared.events.envelope import Envelope, InvalidEvent, decode, describe_invalid
from shared.events.image import ImageFailed, ImagePushed, ManifestPushed
from shared.events.registry import CATALOGUE, model_for_type
from shared.events.scan import AuditCompleted, ScanCompleted

__all__ = [
    "CATALOGUE",
    "STAGES",
    "AuditCompleted",
    "BuildCancelRequested",
    "BuildFinished",
    "BuildRequested",
    "BuildWaiting",
    "CompileCompleted",
    "DeployCompleted",
    "Envelope",
    "Event",
    "ImageFailed",
    "ImagePushed",
    "ImageRequested",
    "InvalidEvent",
    "ManifestPushed",
    "RollbackRequested",
    "ScanCompleted",
    "StageFinished",
    "StageStarted",
    "VerifyCompleted",
    "arch_of",
    "decode",
    "describe_invalid",
    "model_for_type",
]
