"""reporter: which image an audit.completed is about, and its gate verdict (the audit stage)

Revision ID: reporter_0002
Revises: reporter_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "reporter_0002"
down_revision = "reporter_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("log_audit", sa.Column("image", sa.String(length=100), nullable=True))
    op.add_column("log_audit", sa.Column("platform", sa.String(length=20), nullable=True))
    op.add_column("log_audit", sa.Column("digest", sa.String(length=80), nullable=True))
    op.add_column("log_audit", sa.Column("verdict", sa.String(length=10), nullable=True))


def downgrade() -> None:
    for column in ("verdict", "digest", "platform", "image"):
        op.drop_column("log_audit", column)
