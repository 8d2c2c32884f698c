"""The deployer's migrations (deployer_0001 … deployer_0003) create exactly what its models declare
(MariaDB, migrated by Alembic)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import services.deployer.models  # noqa: F401  (registers the deployer tables on Base.metadata)
from shared.db.models import Base

pytestmark = pytest.mark.integration


def test_deployer_migrations_match_models(db_engine):
    with db_engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    ours = [d for d in diffs if "deployer_" in repr(d)]
    assert ours == [], ours
