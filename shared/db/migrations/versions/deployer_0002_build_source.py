"""deployer: the build's source (repository, ref, commit, local path) for the docs stage

Revision ID: deployer_0002
Revises: deployer_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "deployer_0002"
down_revision = "deployer_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deployer_build", sa.Column("source", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("deployer_build", "source")
