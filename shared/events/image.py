"""Image results from the imager workers."""

from __future__ import annotations

from shared.events.base import Event
from shared.events.build import Platform


class ImagePushed(Event):
    subject = "image"
    predicate = "pushed"

    target: str
    platform: Platform
    repository: str
    tag: str
    digest: str
    size_bytes: int
    tags: tuple[str, ...] = ()
    proven: bool = False


class ImageFailed(Event):
    subject = "image"
    predicate = "failed"

    target: str
    platform: Platform
    error: str
    # The last 50 lines of the build or proof log, already free of secrets.
    log_tail: tuple[str, ...] = ()


class ManifestPushed(Event):
    subject = "manifest"
    predicate = "pushed"

    target: str
    repository: str
    tag: str
    digest: str
    platforms: tuple[Platform, ...]
