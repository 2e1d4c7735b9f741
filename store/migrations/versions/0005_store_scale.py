"""A year of alerts: queue indexes, derived time and status, maintained counts, text search.

Revision ID: 0005
Revises: 0003
Create Date: 2027-01-12

At 10^5–10^6 alerts the review queue scanned `alerts` and `decisions` whole on every page (a join for
the status, an expression for the time, OFFSET for depth, COUNT per facet). This revision:

- adds to `alerts` the columns the queue sorts and filters on, derived by triggers (store.scale):
  `moment_ts` (the broadcast moment), `time_ts` (the queue's time: moment, else the scan's),
  `status` and `decision_id` (the latest status-bearing decision);
- replaces the single-column indexes on stream, category, rule and broadcast by indexes that match
  the queue's filters and its order (filter, time_ts, start_s, id), plus status and severity;
- adds the count tables `alert_facets`, `alert_hourly`, `alert_daily`, kept by triggers;
- adds text search: SQLite FTS5 (trigram) over text, context, rule, id and law; PostgreSQL a pg_trgm
  GIN index on the same (skipped, with a warning, where the role may not create the extension);
- fills all of it from the existing rows (one statement per table; about a minute at 10^6 alerts).

The trigger and count SQL lives in store.scale, in one copy: store.migrations.ensure_schema keeps the
triggers off while any revision runs (a table rebuild on SQLite drops some and trips on others) and
installs them, recomputing the derived data, after the last one; run by plain Alembic or as SQL for a
DBA, this revision installs them itself. Downgrade removes everything added and
restores the old indexes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from store import scale

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004_review_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_QUEUE = ("time_ts", "start_s", "id")
_INDEXES = {
    "ix_alerts_queue": [*_QUEUE],
    "ix_alerts_stream_queue": ["stream_id", *_QUEUE],
    "ix_alerts_category_queue": ["category", *_QUEUE],
    "ix_alerts_status_queue": ["status", *_QUEUE],
    "ix_alerts_severity_queue": ["severity", *_QUEUE],
    "ix_alerts_rule_queue": ["rule_id", *_QUEUE],
    "ix_alerts_broadcast_queue": ["broadcast_id", *_QUEUE],
}
_OLD_INDEXES = {
    "ix_alerts_broadcast_id": "broadcast_id",
    "ix_alerts_stream_id": "stream_id",
    "ix_alerts_category": "category",
    "ix_alerts_rule_id": "rule_id",
}


def _dialect() -> str:
    return context.get_context().dialect.name


def upgrade() -> None:
    op.add_column("alerts", sa.Column("moment_ts", sa.Float(), nullable=True))
    op.add_column("alerts", sa.Column("time_ts", sa.Float(), nullable=True))
    op.add_column(
        "alerts", sa.Column("status", sa.String(length=16), server_default="unreviewed", nullable=False)
    )
    op.add_column("alerts", sa.Column("decision_id", sa.Integer(), nullable=True))
    op.create_table(
        "alert_facets",
        sa.Column("stream_id", sa.String(length=128), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("rule_id", sa.String(length=128), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("stream_id", "category", "rule_id", "severity", "source", "status"),
    )
    op.create_table(
        "alert_hourly",
        sa.Column("hour_ts", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("hour_ts", "status"),
    )
    op.create_table(
        "alert_daily",
        sa.Column("day_ts", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("dim", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day_ts", "dim", "key", "status"),
    )
    dialect = _dialect()
    # derived columns, counts and search filled before the indexes exist (cheaper), triggers last;
    # store.migrations.ensure_schema does this itself after the last revision ("scale_deferred")
    if not context.config.attributes.get("scale_deferred"):
        scale.install(op.execute, dialect, rebuild_data=True, monthly=False)  # alert_monthly: 0008
    for name in _OLD_INDEXES:
        op.drop_index(name, table_name="alerts")
    for name, cols in _INDEXES.items():
        op.create_index(name, "alerts", cols)
    if dialect == "postgresql":
        if context.is_offline_mode():
            op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            op.execute(
                f"CREATE INDEX IF NOT EXISTS {scale.PG_SEARCH_INDEX} ON alerts USING gin "
                f"(({scale.search_expression_sql()}) gin_trgm_ops)"
            )
        else:
            scale.create_pg_search_index(op.get_bind())


def downgrade() -> None:
    dialect = _dialect()
    scale.drop_triggers(op.execute, dialect)
    if dialect == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {scale.PG_SEARCH_INDEX}")
        for fn in scale._PG_FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS {fn}()")
    else:
        op.execute(f"DROP TABLE IF EXISTS {scale.FTS_TABLE}")
    for name in _INDEXES:
        op.drop_index(name, table_name="alerts")
    for name, col in _OLD_INDEXES.items():
        op.create_index(name, "alerts", [col])
    for table in scale.COUNT_TABLES:
        op.drop_table(table)
    with op.batch_alter_table("alerts") as b:
        for col in ("decision_id", "status", "time_ts", "moment_ts"):
            b.drop_column(col)
