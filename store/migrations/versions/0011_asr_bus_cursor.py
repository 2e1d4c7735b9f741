"""The ASR stage on the bus: `broadcasts.asr_bus_seq` and `broadcasts.asr_bus_idx`.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

An ASR worker on the bus (app/bus_asr.py) stores each batch of lines it committed and then publishes it
for the analyze workers. Two columns, written in the same transaction as the lines, say which batch
that was: `asr_bus_seq`, its place in the broadcast (the `seq` the analyze workers order by), and
`asr_bus_idx`, the index of its first line. A worker that takes the broadcast over after a crash
between that commit and the publish publishes the same batch again from the store (same id: taken
once). NULL: no batch stored by a bus ASR worker (the monitor's broadcasts, scans). Schema only.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ADD COLUMN in place (a batch rebuild of `broadcasts` would trip the alert-count triggers that name it)
    op.add_column("broadcasts", sa.Column("asr_bus_seq", sa.BigInteger(), nullable=True))
    op.add_column("broadcasts", sa.Column("asr_bus_idx", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("broadcasts", "asr_bus_idx")
    op.drop_column("broadcasts", "asr_bus_seq")
