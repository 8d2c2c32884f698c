"""gateway: circuit breaker of HTTP subscriptions (consecutive failures, paused until)

Revision ID: gateway_0002
Revises: gateway_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "gateway_0002"
down_revision = "gateway_0001"
branch_labels = None
depends_on = None

PRECISE = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.add_column(
        "gateway_subscription",
        sa.Column("consecutive_failures", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("gateway_subscription", sa.Column("paused_until", PRECISE, nullable=True))


def downgrade() -> None:
    op.drop_column("gateway_subscription", "paused_until")
    op.drop_column("gateway_subscription", "consecutive_failures")
