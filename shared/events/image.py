"""Image results from the imager workers."""

from __future__ import annotations

from shared.events.base import Event
from shared.events.build import Platform
from shared.events.formats import Digest, Name, Repository, Tag


class ImagePushed(Event):
    subject = "image"
    predicate = "pushed"

    target: Name
    platform: Platform
    repository: Repository
    tag: Tag
    digest: Digest
    size_bytes: int
    tags: tuple[Tag, ...] = ()
    proven: bool = False


class ImageFailed(Event):
    subject = "image"
    predicate = "failed"

    target: Name
    platform: Platform
    error: str
    # The last 50 lines of the build or proof log, already free of secrets.
    log_tail: tuple[str, ...] = ()


class ManifestPushed(Event):
    subject = "manifest"
    predicate = "pushed"

    target: Name
    repository: Repository
    tag: Tag
    digest: Digest
    platforms: tuple[Platform, ...]
