"""core: one log_build_step row per attempt (uq_step gains `attempt`); log_build_run.attempt

Revision ID: 0002_core
Revises: 0001_core

A replay reruns stages under a new attempt number. The step rows were keyed by (build, stage,
target, platform), so a rerun overwrote the attempt before it and the history forgot what the
first attempt did. Keyed by attempt too, every attempt keeps its own rows; readers take the
newest attempt of each step for the build's current view (shared/history/queries.py).
The run row records the newest attempt it has seen: a replay's first stage makes a finished run
`running` again until that attempt's build.finished (services/reporter/history_writer.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_core"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "log_build_run", sa.Column("attempt", sa.Integer(), nullable=False, server_default=sa.text("1"))
    )
    # The new key first: MariaDB needs an index on build_id while the old one is dropped.
    op.create_unique_constraint(
        "uq_step_attempt", "log_build_step", ["build_id", "stage", "target", "platform", "attempt"]
    )
    op.drop_constraint("uq_step", "log_build_step", type_="unique")


def downgrade() -> None:
    # Keeps the newest attempt of each step, as the table held before.
    op.execute(
        "DELETE older FROM log_build_step older JOIN log_build_step newer"
        " ON older.build_id = newer.build_id AND older.stage = newer.stage"
        " AND older.target = newer.target AND older.platform = newer.platform"
        " AND older.attempt < newer.attempt"
    )
    op.create_unique_constraint("uq_step", "log_build_step", ["build_id", "stage", "target", "platform"])
    op.drop_constraint("uq_step_attempt", "log_build_step", type_="unique")
    op.drop_column("log_build_run", "attempt")
