"""The gate state in the deployer's tables. Every write is an idempotent upsert; status moves only
by conditional UPDATEs whose row count says who won (several replicas may consume the queue)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from services.deployer.gate import Fact, ImageState
from services.deployer.models import DEPLOYING, FINISHED, OPEN, DeployerBuild, DeployerFact, DeployerImage

# A fact's summary goes into build.finished's error: a few lines, not a whole report.
MAX_SUMMARY = 2000


class GateStore:
    def __init__(self, sessions: sessionmaker[Session]):
        self._sessions = sessions

    # -- writes --------------------------------------------------------------------------------

    def ensure_build(
        self,
        build_id: str,
        package: str,
        options: dict[str, Any] | None = None,
        source: dict[str, Any] | None = None,
    ) -> None:
        with self._sessions() as session:
            row = session.execute(select(DeployerBuild).where(DeployerBuild.build_id == build_id)).scalar()
            if row is None:
                try:
                    session.add(
                        DeployerBuild(
                            build_id=build_id,
                            package=package,
                            options=options,
                            source=source,
                            status=OPEN,
                            targets_known=False,
                            started_at=datetime.now(UTC).replace(tzinfo=None),
                        )
                    )
                    session.commit()
                    return
                except IntegrityError:
                    session.rollback()  # another event of the same build created it first
                    row = session.execute(
                        select(DeployerBuild).where(DeployerBuild.build_id == build_id)
                    ).scalar_one()
            if options is not None and row.options is None:
                row.options = options
            if source is not None and row.source is None:
                row.source = source
            if package and not row.package:
                row.package = package
            session.commit()

    def update_image(self, build_id: str, target: str, platform: str, **values: Any) -> None:
        with self._sessions() as session:
            row = session.execute(
                select(DeployerImage).where(
                    DeployerImage.build_id == build_id,
                    DeployerImage.target == target,
                    DeployerImage.platform == platform,
                )
            ).scalar()
            if row is None:
                row = DeployerImage(
                    build_id=build_id,
                    target=target,
                    platform=platform,
                    expected=False,
                )
                session.add(row)
                try:
                    session.flush()
                except IntegrityError:
                    session.rollback()
                    return self.update_image(build_id, target, platform, **values)
            for name, value in values.items():
                setattr(row, name, value)
            session.commit()

    def record_fact(
        self, build_id: str, target: str, platform: str, fact: str, ok: bool, summary: str | None
    ) -> bool:
        """Upsert one fact; True if it wrote. A redelivery (same ok and summary) writes nothing;
        a rerun of the stage that says something else (a replay) replaces what it said."""
        summary = summary[:MAX_SUMMARY] if summary else None
        key = (
            DeployerFact.build_id == build_id,
            DeployerFact.target == target,
            DeployerFact.platform == platform,
            DeployerFact.fact == fact,
        )
        with self._sessions() as session:
            row = session.execute(select(DeployerFact).where(*key)).scalar()
            if row is not None and (row.ok, row.summary) == (ok, summary):
                return False
            now = datetime.now(UTC).replace(tzinfo=None)
            if row is None:
                session.add(
                    DeployerFact(
                        build_id=build_id,
                        target=target,
                        platform=platform,
                        fact=fact,
                        ok=ok,
                        summary=summary,
                        recorded_at=now,
                    )
                )
                try:
                    session.commit()
                    return True
                except IntegrityError:
                    session.rollback()  # the same fact, delivered twice at once: the other won
                    return self.record_fact(build_id, target, platform, fact, ok, summary)
            row.ok, row.summary, row.recorded_at = ok, summary, now
            session.commit()
            return True

    def expect_targets(
        self, build_id: str, targets: list[tuple[str, str]], app_config: dict[str, Any] | None = None
    ) -> None:
        """compile.completed: the images to wait for, and the app config reference (a rerun's
        compile carries its own)."""
        for target, platform in targets:
            self.update_image(build_id, target, platform, expected=True)
        with self._sessions() as session:
            session.execute(
                update(DeployerBuild)
                .where(DeployerBuild.build_id == build_id)
                .values(targets_known=True, app_config=app_config)
            )
            session.commit()

    def reopen(self, build_id: str, attempt: int, clear_facts: Sequence[str]) -> bool:
        """A newer attempt (a replay) starts: the build is open again, its deploy unclaimed, and
        the facts of the stages that rerun forgotten, so the gate waits for them anew. Once per
        attempt: True only for the event whose update moved the attempt forward."""
        with self._sessions() as session:
            won = session.execute(
                update(DeployerBuild)
                .where(DeployerBuild.build_id == build_id, DeployerBuild.attempt < attempt)
                .values(
                    attempt=attempt,
                    status=OPEN,
                    claim_event_id=None,
                    finish_event_id=None,
                    finish_status=None,
                    started_at=datetime.now(UTC).replace(tzinfo=None),
                )
            ).rowcount
            if won and clear_facts:
                session.execute(
                    delete(DeployerFact).where(
                        DeployerFact.build_id == build_id, DeployerFact.fact.in_(tuple(clear_facts))
                    )
                )
            session.commit()
        return bool(won)

    def claim_deploy(self, build_id: str, event_id: str) -> bool:
        """open -> deploying; True for the winner, and for a redelivery of the winning event."""
        return self._transition(build_id, event_id, OPEN, DEPLOYING, "claim_event_id")

    def finish(self, build_id: str, event_id: str, status: str) -> bool:
        """Any state -> finished, once. True if this event finished it (or is its redelivery)."""
        with self._sessions() as session:
            won = session.execute(
                update(DeployerBuild)
                .where(DeployerBuild.build_id == build_id, DeployerBuild.status != FINISHED)
                .values(status=FINISHED, finish_event_id=event_id, finish_status=status)
            ).rowcount
            session.commit()
            if won:
                return True
            row = self.build(build_id)
            return row is not None and row.finish_event_id == event_id

    def mark_finished_elsewhere(self, build_id: str, status: str) -> None:
        """Another stage ended the build (e.g. the compiler on a compile failure)."""
        with self._sessions() as session:
            session.execute(
                update(DeployerBuild)
                .where(DeployerBuild.build_id == build_id, DeployerBuild.status != FINISHED)
                .values(status=FINISHED, finish_status=status)
            )
            session.commit()

    def _transition(self, build_id: str, event_id: str, old: str, new: str, column: str) -> bool:
        with self._sessions() as session:
            won = session.execute(
                update(DeployerBuild)
                .where(DeployerBuild.build_id == build_id, DeployerBuild.status == old)
                .values(status=new, **{column: event_id})
            ).rowcount
            session.commit()
        if won:
            return True
        row = self.build(build_id)
        return row is not None and row.status == new and getattr(row, column) == event_id

    # -- reads ---------------------------------------------------------------------------------

    def build(self, build_id: str) -> DeployerBuild | None:
        with self._sessions() as session:
            return session.execute(select(DeployerBuild).where(DeployerBuild.build_id == build_id)).scalar()

    def images(self, build_id: str) -> list[ImageState]:
        with self._sessions() as session:
            rows = session.execute(select(DeployerImage).where(DeployerImage.build_id == build_id)).scalars()
            return [
                ImageState(
                    target=r.target,
                    platform=r.platform,
                    expected=r.expected,
                    repository=r.repository,
                    digest=r.digest,
                    tag=r.tag,
                )
                for r in rows
            ]

    def facts(self, build_id: str) -> list[Fact]:
        with self._sessions() as session:
            rows = session.execute(select(DeployerFact).where(DeployerFact.build_id == build_id)).scalars()
            return [Fact(r.target, r.platform, r.fact, r.ok, r.summary) for r in rows]
