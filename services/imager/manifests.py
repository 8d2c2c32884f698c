"""Multi-arch indexes: when every expected platform of a target is pushed, push one OCI index.

compile.completed says which platforms each target expects; image.pushed reports them, in any
order. State lives in imager_platform_image; a row in imager_target_index marks the index as
pushed, inserted in the same transaction that emits manifest.pushed, so a redelivered event
neither pushes twice nor loses the event (push_index itself is idempotent).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.imager.image_job import repository_path
from services.imager.models import PlatformImage, TargetIndex
from shared.events import Event
from shared.events.compile import CompileCompleted
from shared.events.image import ImagePushed, ManifestPushed
from shared.registry import RegistryClient

MULTIARCH_SUFFIX = "multiarch"


def index_tags(image_tag: str) -> tuple[str, str]:
    """The index's immutable tag (`b42-multiarch`) and its moving one (`multiarch`).

    Kept apart from the per-platform tags: the amd64 `b42`/`latest` stay single-platform manifests
    (their labels prove a redelivered job was already pushed), the index sits beside them."""
    return f"{image_tag}-{MULTIARCH_SUFFIX}", MULTIARCH_SUFFIX


def index_repository(repositories: list[str]) -> str:
    """The repository without the `-arm` suffix: where a multi-arch pull looks first."""
    plain = [repo for repo in repositories if not repo.endswith("-arm")]
    return sorted(plain or [repo.removesuffix("-arm") for repo in repositories])[0]


def _row(session: Session, build_id: str, target: str, platform: str) -> PlatformImage:
    row = session.scalar(
        select(PlatformImage)
        .where(
            PlatformImage.build_id == build_id,
            PlatformImage.target == target,
            PlatformImage.platform == platform,
        )
        .with_for_update()
    )
    if row is None:
        row = PlatformImage(build_id=build_id, target=target, platform=platform, expected=False, pushed=False)
        session.add(row)
        session.flush()
    return row


def record_expected(sessions: sessionmaker, build_id: str, event: CompileCompleted) -> set[str]:
    with sessions.begin() as session:
        for item in event.targets:
            _row(session, build_id, item.target, item.platform).expected = True
    return {item.target for item in event.targets}


def record_pushed(sessions: sessionmaker, build_id: str, event: ImagePushed) -> set[str]:
    with sessions.begin() as session:
        row = _row(session, build_id, event.target, event.platform)
        row.pushed, row.repository, row.tag, row.digest = True, event.repository, event.tag, event.digest
    return {event.target}


def assemble_ready(
    sessions: sessionmaker,
    build_id: str,
    targets: set[str],
    *,
    registry: RegistryClient,
    emit: Callable[[Event], object],
) -> list[str]:
    """Push and announce the index of every target in `targets` whose platforms are all pushed."""
    done = []
    for target in sorted(targets):
        with sessions.begin() as session:
            rows = session.scalars(
                select(PlatformImage)
                .where(PlatformImage.build_id == build_id, PlatformImage.target == target)
                .with_for_update()
            ).all()
            expected = [row for row in rows if row.expected]
            if not expected or not all(row.pushed for row in expected):
                continue
            already = session.scalar(
                select(TargetIndex).where(TargetIndex.build_id == build_id, TargetIndex.target == target)
            )
            if already is not None:
                continue
            repository = index_repository([row.repository for row in expected])
            immutable, moving = index_tags(expected[0].tag)
            refs = [
                (row.platform, repository_path(row.repository), row.digest)
                for row in sorted(expected, key=lambda r: r.platform)
            ]
            digest = registry.push_index(repository_path(repository), immutable, refs)
            registry.push_index(repository_path(repository), moving, refs)
            session.add(
                TargetIndex(
                    build_id=build_id, target=target, repository=repository, tag=immutable, digest=digest
                )
            )
            session.flush()
            emit(
                ManifestPushed(
                    target=target,
                    repository=repository,
                    tag=immutable,
                    digest=digest,
                    platforms=tuple(row.platform for row in sorted(expected, key=lambda r: r.platform)),
                )
            )
            done.append(target)
    return done
