"""gateway: concurrency groups (per package and branch: its builds' slots, held builds)

Revision ID: gateway_0003
Revises: gateway_0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "gateway_0003"
down_revision = "gateway_0002"
branch_labels = None
depends_on = None

PRECISE = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "gateway_concurrency_group",
        sa.Column("group_hash", sa.String(length=64), nullable=False),
        sa.Column("package", sa.String(length=100), nullable=False),
        sa.Column("branch", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("group_hash"),
    )
    op.create_table(
        "gateway_concurrency_slot",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("build_id", sa.String(length=36), nullable=False),
        sa.Column("group_hash", sa.String(length=64), nullable=False),
        sa.Column("package", sa.String(length=100), nullable=False),
        sa.Column("build_number", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("request", sa.JSON(), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("created_at", PRECISE, nullable=False),
        sa.Column("updated_at", PRECISE, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("build_id"),
    )
    op.create_index("ix_gateway_concurrency_slot_group_hash", "gateway_concurrency_slot", ["group_hash"])


def downgrade() -> None:
    op.drop_table("gateway_concurrency_slot")
    op.drop_table("gateway_concurrency_group")
