"""imager manifest state: platform images per target and the multi-arch index marker

Revision ID: imager_0001
Revises: 0001_core
"""

import sqlalchemy as sa
from alembic import op

revision = "imager_0001"
down_revision = "0001_core"
branch_labels = ("imager",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imager_platform_image",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("build_id", sa.String(length=36), nullable=False),
        sa.Column("target", sa.String(length=100), nullable=False),
        sa.Column("platform", sa.String(length=20), nullable=False),
        sa.Column("expected", sa.Boolean(), nullable=False),
        sa.Column("pushed", sa.Boolean(), nullable=False),
        sa.Column("repository", sa.String(length=500), nullable=True),
        sa.Column("tag", sa.String(length=128), nullable=True),
        sa.Column("digest", sa.String(length=80), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("build_id", "target", "platform", name="uq_imager_platform_image"),
    )
    op.create_table(
        "imager_target_index",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("build_id", sa.String(length=36), nullable=False),
        sa.Column("target", sa.String(length=100), nullable=False),
        sa.Column("repository", sa.String(length=500), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("build_id", "target", name="uq_imager_target_index"),
    )


def downgrade() -> None:
    op.drop_table("imager_target_index")
    op.drop_table("imager_platform_image")
