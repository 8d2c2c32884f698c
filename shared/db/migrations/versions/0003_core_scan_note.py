"""core: log_build_scan.note, the scan's own words (advisory source and age, policy reasons)

Revision ID: 0003_core
Revises: 0002_core

The scan.completed event carries a note (which vulnerability data was consulted and how old it
is, the reasons of the verdict); the report shows it beside each scan.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_core"
down_revision = "0002_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("log_build_scan", sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("log_build_scan", "note")
