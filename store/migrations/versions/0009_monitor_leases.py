"""Monitor ownership: `monitor_leases` and `broadcasts.owner`.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

Several monitors may share one database (PostgreSQL), each recording its own streams into its own data
directory. Each monitor instance holds a lease (`monitor_leases`: owner id, host, pid, data directory,
start, heartbeat, expiry) and stamps the broadcasts it starts with its id (`broadcasts.owner`); resume,
the pending-evidence sweep, retention and the evidence verification pass touch only their own
broadcasts (store.leases).

Existing broadcasts keep `owner` NULL ("legacy"): the first monitor to start after the upgrade claims
the unfinished ones it resumes and the finished ones whose recordings lie in its data directory, so a
single-monitor store upgrades with no change in behaviour. Schema only; downgrade drops both.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "monitor_leases",
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("host", sa.String(length=256), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("data_dir", sa.Text(), nullable=False),
        sa.Column("started_ts", sa.Float(), nullable=False),
        sa.Column("heartbeat_ts", sa.Float(), nullable=False),
        sa.Column("expires_ts", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("owner"),
    )
    op.add_column("broadcasts", sa.Column("owner", sa.String(length=128), nullable=True))
    op.create_index("ix_broadcasts_owner", "broadcasts", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_broadcasts_owner", table_name="broadcasts")
    # in place (SQLite 3.35+, PostgreSQL): a batch rebuild of `broadcasts` trips the triggers that name it
    op.drop_column("broadcasts", "owner")
    op.drop_table("monitor_leases")
