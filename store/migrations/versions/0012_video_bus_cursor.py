"""Video on the bus: `broadcasts.bus_video_epoch` and `broadcasts.bus_video_seq`.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03

An ingest worker on the bus reads its broadcasts' frames (the monitor's video reader) and publishes
each batch of captions and visual detections; an analyze worker stores each batch's alerts, captions and
video watermark in one transaction and, in the same transaction, which batch that was: the reader
(`bus_video_epoch`: 0 for the reader that began the broadcast, larger for one that took it over) and
the batch's place in that reader's batches (`bus_video_seq`). A redelivered batch is recognised as
committed and not analysed again. NULL: no video batch committed from the bus. Schema only.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ADD COLUMN in place (a batch rebuild of `broadcasts` would trip the alert-count triggers that name it)
    op.add_column("broadcasts", sa.Column("bus_video_epoch", sa.BigInteger(), nullable=True))
    op.add_column("broadcasts", sa.Column("bus_video_seq", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("broadcasts", "bus_video_seq")
    op.drop_column("broadcasts", "bus_video_epoch")
