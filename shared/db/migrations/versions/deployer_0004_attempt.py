"""deployer: the attempt a build's gate state belongs to (deployer_build.attempt)

Revision ID: deployer_0004
Revises: deployer_0003

A replay (`kiln replay <build> --from <stage>`) reruns stages under a new attempt number; the
first event of a newer attempt reopens the build's gate (services/deployer/handlers.py), which
needs to know which attempt the state is of. Existing rows are attempt 1.
"""

import sqlalchemy as sa
from alembic import op

revision = "deployer_0004"
down_revision = "deployer_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "deployer_build", sa.Column("attempt", sa.Integer(), nullable=False, server_default=sa.text("1"))
    )


def downgrade() -> None:
    op.drop_column("deployer_build", "attempt")
