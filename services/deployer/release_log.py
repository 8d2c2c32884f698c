"""What each build's deploy released (deployer_release): the rollback's source of truth.

Written by the deploy step after every release it ran (healthy or rolled back), read by a
rollback to that build. Upserts on the build id: a redelivery or a replay's redeploy of the same
build overwrites the row with what it released last."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from services.deployer.models import DeployerRelease


@dataclass(frozen=True)
class RecordedRelease:
    build_id: str
    package: str
    platform: str
    images: dict[str, str]  # service -> repository@sha256:…
    config_json: str
    healthy: bool
    app_config_json: str | None = None  # the build's trimmed app config document


class ReleaseLog:
    def __init__(self, sessions: sessionmaker[Session]):
        self._sessions = sessions

    def record(
        self,
        build_id: str,
        package: str,
        platform: str,
        images: Mapping[str, str],
        config_json: str,
        healthy: bool,
        app_config_json: str | None = None,
    ) -> None:
        values = {
            "app_config_json": app_config_json,
            "package": package,
            "platform": platform,
            "images": dict(sorted(images.items())),
            "config_json": config_json,
            "healthy": healthy,
            "recorded_at": datetime.now(UTC).replace(tzinfo=None),
        }
        with self._sessions() as session:
            row = _row(session, build_id)
            if row is None:
                session.add(DeployerRelease(build_id=build_id, **values))
                try:
                    session.commit()
                    return
                except IntegrityError:  # the same build recorded at once by another replica
                    session.rollback()
                    row = _row(session, build_id)
                    assert row is not None
            for name, value in values.items():
                setattr(row, name, value)
            session.commit()

    def get(self, build_id: str) -> RecordedRelease | None:
        with self._sessions() as session:
            row = _row(session, build_id)
            if row is None:
                return None
            return RecordedRelease(
                row.build_id,
                row.package,
                row.platform,
                dict(row.images),
                row.config_json,
                row.healthy,
                row.app_config_json,
            )


def _row(session: Session, build_id: str) -> DeployerRelease | None:
    return session.execute(select(DeployerRelease).where(DeployerRelease.build_id == build_id)).scalar()
