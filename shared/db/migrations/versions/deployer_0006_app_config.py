"""deployer: the app config a build carries and a release mounted

Revision ID: deployer_0006
Revises: deployer_0005

`deployer_build.app_config` is compile.completed's reference to the build's trimmed app config
(packages.<p>.app_config, docs/configuration.md), fetched at deploy time. `deployer_release.
app_config_json` is the document that release mounted, so a rollback to that build mounts it
again. Both are NULL for packages without an app config and for builds before this migration.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "deployer_0006"
down_revision = "deployer_0005"
branch_labels = None
depends_on = None

BIG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql").with_variant(mysql.LONGTEXT(), "mariadb")


def upgrade() -> None:
    op.add_column("deployer_build", sa.Column("app_config", sa.JSON(), nullable=True))
    op.add_column("deployer_release", sa.Column("app_config_json", BIG_TEXT, nullable=True))


def downgrade() -> None:
    op.drop_column("deployer_release", "app_config_json")
    op.drop_column("deployer_build", "app_config")
