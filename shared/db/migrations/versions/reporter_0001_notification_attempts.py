"""reporter: notification attempts (email, commit status)

Revision ID: reporter_0001
Revises: 0001_core
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "reporter_0001"
down_revision = "0001_core"
branch_labels = ("reporter",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reporter_notification",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("build_id", sa.String(length=36), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime()
            .with_variant(mysql.DATETIME(fsp=6), "mariadb")
            .with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", "channel", "target", name="uq_notification"),
    )
    op.create_index(
        op.f("ix_reporter_notification_build_id"), "reporter_notification", ["build_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_reporter_notification_build_id"), table_name="reporter_notification")
    op.drop_table("reporter_notification")
