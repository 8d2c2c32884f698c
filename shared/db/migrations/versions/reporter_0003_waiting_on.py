"""reporter: log_build_run.waiting_on (a build held by its concurrency group)

Revision ID: reporter_0003
Revises: reporter_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "reporter_0003"
down_revision = "reporter_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("log_build_run", sa.Column("waiting_on", sa.String(length=255), nullable=True))


def downgrade() -> None:
    op.drop_column("log_build_run", "waiting_on")
