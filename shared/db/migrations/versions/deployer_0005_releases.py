"""deployer: what each build's deploy released (deployer_release), for rollbacks

Revision ID: deployer_0005
Revises: deployer_0004

`kiln rollback <package> --to <number>` redeploys what that build deployed: its image references
(by digest) and the trimmed config its containers mounted. The deployer records both at every
deploy (services/deployer/deploy_step.py); builds deployed before this migration have no row and
cannot be rolled back to (the rollback fails naming why).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "deployer_0005"
down_revision = "deployer_0004"
branch_labels = None
depends_on = None

PRECISE_TIME = (
    sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mariadb").with_variant(mysql.DATETIME(fsp=6), "mysql")
)
BIG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql").with_variant(mysql.LONGTEXT(), "mariadb")


def upgrade() -> None:
    op.create_table(
        "deployer_release",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("build_id", sa.String(length=36), nullable=False),
        sa.Column("package", sa.String(length=100), nullable=False),
        sa.Column("platform", sa.String(length=20), nullable=False),
        sa.Column("images", sa.JSON(), nullable=False),
        sa.Column("config_json", BIG_TEXT, nullable=False),
        sa.Column("healthy", sa.Boolean(), nullable=False),
        sa.Column("recorded_at", PRECISE_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("build_id"),
    )


def downgrade() -> None:
    op.drop_table("deployer_release")
