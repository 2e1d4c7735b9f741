"""Review sessions in the database; decisions can record which decision they undo.

Revision ID: 0004_review_sessions
Revises: 0003
Create Date: 2026-12-03

`review_sessions`: one row per review-app login (the session id's SHA-256, never the id itself; user,
issue and expiry time, when it was revoked). The signed cookie names the session; a request is let in
only while its row exists, is not revoked and has not expired, so a logout holds across restarts and
across several review processes on one database. This replaces the file
`<data dir>/review-revoked-sessions.json`, which is not imported: cookies issued before this revision
have no row and simply need a new login.

`decisions.undoes_id`: the id of the decision a reviewer took back within the undo window. The undo is
a new row (the trail stays append-only) whose `decision` is the status the alert had before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_review_sessions"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "review_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("created_ts", sa.Float(), nullable=False),
        sa.Column("expires_ts", sa.Float(), nullable=False),
        sa.Column("revoked_ts", sa.Float(), nullable=True),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_review_sessions_expires_ts", "review_sessions", ["expires_ts"])
    op.add_column("decisions", sa.Column("undoes_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:  # SQLite: DROP COLUMN by rebuilding the table
        batch.drop_column("undoes_id")
    op.drop_index("ix_review_sessions_expires_ts", table_name="review_sessions")
    op.drop_table("review_sessions")
