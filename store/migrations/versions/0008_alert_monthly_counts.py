"""Monthly alert counts: statistics for a long period sum a row per month, not one per day.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

Statistics for a period inside a longer store (a year out of several, a quarter, a month) summed
`alert_daily`, a row per UTC day, dimension (stream, category, rule), key and status: ~300k rows for a
year of 200 streams, 1–2 s at 10^6 alerts. This revision adds `alert_monthly`, the same counts per UTC
calendar month (`month_ts`, the epoch seconds of the month's start), kept by store.scale's triggers
beside the daily ones. The statistics take whole months from it and only the days at the period's
edges from `alert_daily` (review.queries).

It is filled from `alert_daily` (UTC days nest in UTC months: one grouped sum, seconds at 10^6
alerts), and the triggers are reinstalled to keep it. Under store.migrations.ensure_schema the
triggers are off while revisions run and are installed after the last one, with every count table
recomputed from the rows ("scale_deferred"); run alone by Alembic or as SQL, this revision reinstalls
them itself without recomputing the other tables. Downgrade drops the table and reinstalls the
triggers without it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from store import scale

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _dialect() -> str:
    return context.get_context().dialect.name


def upgrade() -> None:
    op.create_table(
        scale.MONTHLY_TABLE,
        sa.Column("month_ts", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("dim", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("month_ts", "dim", "key", "status"),
    )
    dialect = _dialect()
    for statement in scale.monthly_rebuild_statements(dialect):
        op.execute(statement)
    if not context.config.attributes.get("scale_deferred"):
        scale.install(op.execute, dialect, rebuild_data=False, monthly=True)


def downgrade() -> None:
    dialect = _dialect()
    scale.drop_triggers(op.execute, dialect)
    op.drop_table(scale.MONTHLY_TABLE)
    scale.install(op.execute, dialect, rebuild_data=False, monthly=False)
