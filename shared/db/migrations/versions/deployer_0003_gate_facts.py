"""deployer: the gate's facts as rows (deployer_fact), not columns of deployer_image

Revision ID: deployer_0003
Revises: deployer_0002

A gate stage (shared.stages, gate=True) is now a row (build, target, platform, fact, ok, summary)
instead of a pair of columns, so a new gate stage needs no migration. What the old columns said
of builds still open is carried over, so an upgrade under a running build does not lose it:
`pushed` -> a `push` fact (the old gate took image.pushed as the push having succeeded),
`scanned`/`verdict`/`scan_summary` -> a `scan` fact, `failure` -> a failed `image` fact.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "deployer_0003"
down_revision = "deployer_0002"
branch_labels = None
depends_on = None

PRECISE_TIME = (
    sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mariadb").with_variant(mysql.DATETIME(fsp=6), "mysql")
)
OLD_COLUMNS = ("pushed", "scanned", "verdict", "scan_summary", "failure")
CARRY_OVER = (
    # (fact, ok, summary, which old rows)
    ("push", "1", "NULL", "pushed"),
    ("scan", "verdict = 'pass'", "scan_summary", "scanned"),
    ("image", "0", "failure", "failure IS NOT NULL"),
)


def upgrade() -> None:
    op.create_table(
        "deployer_fact",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("build_id", sa.String(length=36), nullable=False),
        sa.Column("target", sa.String(length=100), nullable=False),
        sa.Column("platform", sa.String(length=20), nullable=False),
        sa.Column("fact", sa.String(length=40), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("recorded_at", PRECISE_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("build_id", "target", "platform", "fact", name="uq_deployer_fact"),
    )
    op.create_index("ix_deployer_fact_build_id", "deployer_fact", ["build_id"])
    for fact, ok, summary, where in CARRY_OVER:
        op.execute(
            "INSERT INTO deployer_fact (build_id, target, platform, fact, ok, summary, recorded_at) "
            f"SELECT build_id, target, platform, '{fact}', {ok}, {summary}, CURRENT_TIMESTAMP "
            f"FROM deployer_image WHERE {where}"
        )
    with op.batch_alter_table("deployer_image") as table:
        for column in OLD_COLUMNS:
            table.drop_column(column)


def downgrade() -> None:
    with op.batch_alter_table("deployer_image") as table:
        table.add_column(sa.Column("pushed", sa.Boolean(), nullable=False, server_default=sa.false()))
        table.add_column(sa.Column("scanned", sa.Boolean(), nullable=False, server_default=sa.false()))
        table.add_column(sa.Column("verdict", sa.String(length=10), nullable=True))
        table.add_column(sa.Column("scan_summary", sa.Text(), nullable=True))
        table.add_column(sa.Column("failure", sa.Text(), nullable=True))
    op.execute("UPDATE deployer_image SET pushed = 1 WHERE repository IS NOT NULL")
    op.execute(
        "UPDATE deployer_image i JOIN deployer_fact f ON f.build_id = i.build_id AND f.target = i.target "
        "AND f.platform = i.platform AND f.fact = 'scan' "
        "SET i.scanned = 1, i.verdict = IF(f.ok, 'pass', 'fail'), i.scan_summary = f.summary"
    )
    op.execute(
        "UPDATE deployer_image i JOIN deployer_fact f ON f.build_id = i.build_id AND f.target = i.target "
        "AND f.platform = i.platform AND f.fact = 'image' AND NOT f.ok SET i.failure = f.summary"
    )
    op.drop_index("ix_deployer_fact_build_id", table_name="deployer_fact")
    op.drop_table("deployer_fact")
