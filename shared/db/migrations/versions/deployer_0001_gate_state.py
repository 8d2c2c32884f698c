"""deployer gate state: builds and expected images

Revision ID: deployer_0001
Revises: 0001_core
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "deployer_0001"
down_revision = "0001_core"
branch_labels = ("deployer",)
depends_on = None

PRECISE_TIME = (
    sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mariadb").with_variant(mysql.DATETIME(fsp=6), "mysql")
)


def upgrade() -> None:
    op.create_table(
        "deployer_build",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("build_id", sa.String(length=36), nullable=False),
        sa.Column("package", sa.String(length=100), nullable=False),
        sa.Column("options", sa.JSON(), nullable=True),
        sa.Column("targets_known", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("claim_event_id", sa.String(length=36), nullable=True),
        sa.Column("finish_event_id", sa.String(length=36), nullable=True),
        sa.Column("finish_status", sa.String(length=20), nullable=True),
        sa.Column("started_at", PRECISE_TIME, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("build_id"),
    )
    op.create_table(
        "deployer_image",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("build_id", sa.String(length=36), nullable=False),
        sa.Column("target", sa.String(length=100), nullable=False),
        sa.Column("platform", sa.String(length=20), nullable=False),
        sa.Column("expected", sa.Boolean(), nullable=False),
        sa.Column("pushed", sa.Boolean(), nullable=False),
        sa.Column("repository", sa.String(length=500), nullable=True),
        sa.Column("tag", sa.String(length=128), nullable=True),
        sa.Column("digest", sa.String(length=80), nullable=True),
        sa.Column("scanned", sa.Boolean(), nullable=False),
        sa.Column("verdict", sa.String(length=10), nullable=True),
        sa.Column("scan_summary", sa.Text(), nullable=True),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("build_id", "target", "platform", name="uq_deployer_image"),
    )
    op.create_index("ix_deployer_image_build_id", "deployer_image", ["build_id"])


def downgrade() -> None:
    op.drop_index("ix_deployer_image_build_id", table_name="deployer_image")
    op.drop_table("deployer_image")
    op.drop_table("deployer_build")
