"""Stored evidence verification results.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

`evidence_checks`: the latest check of each evidence file, written by the background verification pass
over the evidence store (`livewatch evidence verify-store`, or the review app every
`evidence.verify_interval_s`) and by a reviewer's Verify: state (ok / missing / changed), when, the
SHA-256 seen, and for the capture manifest its signature status. The queue, the alert page and
`/metrics` read it. Nothing to fill: the first pass writes the rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "evidence_checks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("checked_ts", sa.Float(), nullable=False),
        sa.Column("sha256_seen", sa.String(length=64), nullable=True),
        sa.Column("signature", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("alert_id", "name"),
    )
    op.create_index("ix_evidence_checks_alert_id", "evidence_checks", ["alert_id"])
    op.create_index("ix_evidence_checks_checked_ts", "evidence_checks", ["checked_ts"])


def downgrade() -> None:
    op.drop_index("ix_evidence_checks_checked_ts", table_name="evidence_checks")
    op.drop_index("ix_evidence_checks_alert_id", table_name="evidence_checks")
    op.drop_table("evidence_checks")
