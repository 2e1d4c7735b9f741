"""PostgreSQL parity: broadcast ids VARCHAR(128), byte sizes BIGINT.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Live broadcast ids are '<stream, up to 60>-<UTC stamp>-<4 hex>' (ingest.recorder.new_broadcast_id), up to
82 characters: PostgreSQL refused them in VARCHAR(64). File sizes over 2 GiB (a long recording scanned as
one file) overflowed PostgreSQL's 32-bit INTEGER. SQLite ignores VARCHAR lengths and stores every
INTEGER in 64 bits, so nothing changes there (store.migrations.compare_type knows this) and no table
is rebuilt. On PostgreSQL, widening VARCHAR rewrites nothing; INTEGER -> BIGINT rewrites three tables.
Downgrading fails on PostgreSQL if longer ids or larger sizes were stored since.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# broadcasts.id first: the foreign keys of the others point at it
_BROADCAST_IDS = [
    ("broadcasts", "id"),
    ("alerts", "broadcast_id"),
    ("detections", "broadcast_id"),
    ("media_segments", "broadcast_id"),
    ("price_claims", "broadcast_id"),
    ("utterances", "broadcast_id"),
]
_SIZES = [
    ("broadcasts", "media_size", True),
    ("media_segments", "size", False),
    ("evidence_files", "size", False),
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column in _BROADCAST_IDS:
        op.alter_column(
            table, column, existing_type=sa.String(64), type_=sa.String(128), existing_nullable=False
        )
    for table, column, nullable in _SIZES:
        op.alter_column(
            table, column, existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=nullable
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column, nullable in _SIZES:
        op.alter_column(
            table, column, existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=nullable
        )
    for table, column in reversed(_BROADCAST_IDS):
        op.alter_column(
            table, column, existing_type=sa.String(128), type_=sa.String(64), existing_nullable=False
        )
