"""Engine and session factory, and schema upgrades through Alembic (never `create_all`)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import BuildCounter

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str, **kwargs: object) -> Engine:
    # pool_pre_ping: a MariaDB restart must not hand out dead connections (the reporter catches up).
    return create_engine(url, pool_pre_ping=True, pool_recycle=3600, future=True, **kwargs)


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "heads") -> None:
    """Bring the schema to the newest revision of every branch (each service may own one)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def next_build_number(session: Session, package: str) -> int:
    """Increasing per package; the row lock makes concurrent requests get distinct numbers."""
    try:
        with session.begin_nested():  # the first build of a package creates its counter row
            session.add(BuildCounter(package=package, last_number=0))
    except IntegrityError:
        pass  # another request created it first; the lock below serialises us
    counter = session.execute(
        select(BuildCounter).where(BuildCounter.package == package).with_for_update()
    ).scalar_one()
    counter.last_number += 1
    session.flush()
    return counter.last_number
