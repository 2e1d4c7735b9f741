"""A live broadcast's progress as columns: what was untyped keys of `broadcasts.meta`.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

The monitor, the bus workers and resume read a broadcast's progress through the pipeline — its
recordings folder, the source clock, the HLS position, the ASR, analysis and video watermarks and
whether each is complete, why it ended, the last bus batch committed — about forty times. They were
keys of the JSON `meta` blob (`(b.meta or {}).get("asr_done_s", 0.0)`); they are columns now, typed
and queryable (the pending-evidence sweep filters on `analysis_complete` and `analyzed_s` in SQL).
`meta` keeps what is not progress: a scan's ASR signature, options and stats, an HLS join's details.

Upgrade adds the columns and moves the values of existing rows out of `meta` (one pass over the live
broadcasts; scans have none of these keys). Downgrade puts them back into `meta` and drops the columns.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger("store.migrations.0010")

# column -> (meta key, type)
FIELDS: dict[str, tuple[str, Any]] = {
    "folder": ("dir", sa.Text()),
    "source_start_s": ("source_start_s", sa.Float()),
    "media_gap_s": ("media_gap_s", sa.Float()),
    "hls_last_seq": ("hls_last_seq", sa.BigInteger()),
    "end_reason": ("end_reason", sa.Text()),
    "asr_done_s": ("asr_done_s", sa.Float()),
    "asr_complete": ("asr_complete", sa.Boolean()),
    "analyzed_s": ("analyzed_s", sa.Float()),
    "analysis_complete": ("analysis_complete", sa.Boolean()),
    "video_expected": ("video_expected", sa.Boolean()),
    "video_done_s": ("video_done_s", sa.Float()),
    "video_resume_s": ("video_resume_s", sa.Float()),
    "video_complete": ("video_complete", sa.Boolean()),
    "bus_seq": ("bus_seq", sa.BigInteger()),
}
DEFAULTS = {"asr_done_s": "0", "analyzed_s": "0", "video_done_s": "0"}
FLAGS = ("asr_complete", "analysis_complete", "video_expected", "video_complete")


def _meta(value: Any) -> dict[str, Any]:
    if isinstance(value, str):  # SQLite hands JSON back as text through a lightweight table
        value = json.loads(value) if value else {}
    return dict(value or {})


def upgrade() -> None:
    # ALTER TABLE ... ADD COLUMN in place on both databases (a batch rebuild of `broadcasts` would trip
    # the alert-count triggers that name it)
    for col, (_key, type_) in FIELDS.items():
        if col in FLAGS:
            op.add_column("broadcasts", sa.Column(col, type_, nullable=False, server_default=sa.false()))
        elif col in DEFAULTS:
            op.add_column("broadcasts", sa.Column(col, type_, nullable=False, server_default=DEFAULTS[col]))
        else:
            op.add_column("broadcasts", sa.Column(col, type_, nullable=True))
    if context.is_offline_mode():
        logger.warning("0010: broadcast progress is moved out of meta only when migrating a live database")
        return
    bind = op.get_bind()
    table = sa.table("broadcasts", sa.column("id", sa.String()), sa.column("meta", sa.JSON()),
                     *(sa.column(c, t) for c, (_k, t) in FIELDS.items()))
    rows = bind.execute(sa.select(table.c.id, table.c.meta)).all()
    for bid, raw in rows:
        meta = _meta(raw)
        moved = {col: meta.pop(key) for col, (key, _t) in FIELDS.items() if key in meta}
        if not moved:
            continue
        for col in FLAGS:
            if col in moved:
                moved[col] = bool(moved[col])
        for col in DEFAULTS:
            if col in moved and moved[col] is None:
                moved[col] = 0.0
        bind.execute(sa.update(table).where(table.c.id == bid).values(meta=meta, **moved))


def downgrade() -> None:
    if context.is_offline_mode():
        logger.warning("0010: broadcast progress is moved back into meta only when migrating a live database")
    else:
        _progress_back_into_meta()
    # ALTER TABLE ... DROP COLUMN in place (SQLite 3.35+ and PostgreSQL): a batch rebuild of `broadcasts`
    # would trip the alert-count triggers that name it
    for col in FIELDS:
        op.drop_column("broadcasts", col)


def _progress_back_into_meta() -> None:
    bind = op.get_bind()
    table = sa.table("broadcasts", sa.column("id", sa.String()), sa.column("meta", sa.JSON()),
                     *(sa.column(c, t) for c, (_k, t) in FIELDS.items()))
    rows = bind.execute(sa.select(table.c.id, table.c.meta, *(table.c[c] for c in FIELDS))).all()
    for row in rows:
        meta = _meta(row.meta)
        for col, (key, _t) in FIELDS.items():
            value = getattr(row, col)
            if value is not None and (col not in FLAGS or value):
                meta[key] = value
        bind.execute(sa.update(table).where(table.c.id == row.id).values(meta=meta))
