"""Alembic environment: the URL comes from the caller (shared.db.engine.upgrade) or KILN_DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from shared.db.models import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        from shared.settings import KilnSettings

        url = KilnSettings().database_url
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
