"""gateway: webhook redelivery keys and HTTP subscriptions

Revision ID: gateway_0001
Revises: 0001_core
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "gateway_0001"
down_revision = "0001_core"
branch_labels = ("gateway",)
depends_on = None

PRECISE = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "gateway_delivery_key",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=700), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("build_ids", sa.JSON(), nullable=True),
        sa.Column("created_at", PRECISE, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_table(
        "gateway_subscription",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("url", sa.String(length=1000), nullable=False),
        sa.Column("filter", sa.String(length=200), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_status", sa.String(length=30), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_event_id", sa.String(length=36), nullable=True),
        sa.Column("last_attempt_at", PRECISE, nullable=True),
        sa.Column("created_at", PRECISE, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("gateway_subscription")
    op.drop_table("gateway_delivery_key")
