"""Live recording paths relative to the data directory.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

Revision 0003 made evidence paths relative to the data directory; the live monitor's recordings still
stored the path as the monitor saw it: `media_segments.path` (each recorded file) and the `dir` of a
live broadcast's `meta` (its folder), absolute or relative to the folder the monitor ran in. After the
data directory moved, evidence could no longer be cut from them, retention deleted nothing and a
restarted monitor found no files to resume. Now they are stored relative to the data directory
(`recordings/<stream>/<broadcast>/seg_000012.ts`) and resolved when read (store.paths). This revision
rewrites existing rows, as 0003 did for evidence:

- an absolute path inside the data directory → relative to it;
- a relative path that, taken from the current folder, lies inside the data directory → relative to it;
- any other relative path whose tail `recordings/...` exists in the data directory (the file, or for a
  file retention already deleted, its folder) → that tail;
- anything else is left as it is (counted and logged once per folder): a recordings root configured
  outside the data directory, or a folder that is gone.

Rows are read in keyset pages and decided per folder (a broadcast has thousands of files in one
folder), so a store with millions of segment rows migrates in one pass with bounded memory. The data
directory comes from `config.attributes["data_dir"]`, else the SQLite file's folder; without either
nothing is rewritten and a warning says so. The logic is copied here, not imported, so that this
revision keeps meaning what it meant when it was written. Data only; downgrade keeps the rewritten
paths (they stay valid for a reader resolving them against the data directory).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger("store.migrations.0007")

PAGE = 5000


def _under(path: Path, root: Path) -> str | None:
    for p, r in ((path, root), (path.resolve(), root.resolve())):
        try:
            rel = p.relative_to(r)
        except ValueError:
            continue
        return rel.as_posix() if rel.parts else None
    return None


def relocate_folder(stored: str, data_dir: Path, cwd: Path) -> str | None:
    """The data-dir-relative form of a stored recordings folder, or None to leave it as it is."""
    p = Path(stored)
    if not stored:
        return None
    if p.is_absolute():
        return _under(p, data_dir)
    inside = _under(cwd / p, data_dir)
    if inside is not None:
        return inside
    parts = PurePosixPath(p.as_posix()).parts
    if "recordings" in parts:
        i = len(parts) - 1 - parts[::-1].index("recordings")
        tail = PurePosixPath(*parts[i:])
        if len(tail.parts) >= 2 and (data_dir / tail).is_dir():
            return tail.as_posix()
    return None


def _data_dir(bind: sa.Connection) -> Path | None:
    given = context.config.attributes.get("data_dir") if context.config is not None else None
    if given is not None:
        return Path(given).absolute()
    url = bind.engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(str(url.database)).absolute().parent
    return None


def upgrade() -> None:
    if context.is_offline_mode():
        logger.warning("0007: recording paths are rewritten only when migrating a live database")
        return
    bind = op.get_bind()
    data_dir = _data_dir(bind)
    segments = sa.table("media_segments", sa.column("id", sa.Integer), sa.column("path", sa.Text))
    broadcasts = sa.table(
        "broadcasts", sa.column("id", sa.String), sa.column("kind", sa.String), sa.column("meta", sa.JSON)
    )
    if data_dir is None:
        if bind.execute(sa.select(segments.c.id).limit(1)).first() is not None:
            logger.warning(
                "0007: no data directory known for %s; stored recording paths were left as they are",
                bind.engine.url.render_as_string(hide_password=True),
            )
        return
    cwd = Path(os.getcwd())
    memo: dict[str, str | None] = {}

    def folder_form(stored: str) -> str | None:
        if stored not in memo:
            memo[stored] = relocate_folder(stored, data_dir, cwd)
            if memo[stored] is None and stored:
                logger.warning(
                    "0007: recordings in %s are not inside the data directory %s; left as they are",
                    stored,
                    data_dir,
                )
        return memo[stored]

    moved = kept = 0
    last = 0
    while True:
        rows = bind.execute(
            sa.select(segments.c.id, segments.c.path)
            .where(segments.c.id > last)
            .order_by(segments.c.id)
            .limit(PAGE)
        ).all()
        if not rows:
            break
        last = rows[-1].id
        updates: list[dict[str, Any]] = []
        for r in rows:
            p = PurePosixPath(Path(r.path).as_posix())
            folder = folder_form(str(Path(r.path).parent))
            if folder is None:
                kept += 1
                continue
            new = f"{folder}/{p.name}"
            if new != r.path:
                updates.append({"row_id": r.id, "new_path": new})
        if updates:
            bind.execute(
                sa.update(segments)
                .where(segments.c.id == sa.bindparam("row_id"))
                .values(path=sa.bindparam("new_path")),
                updates,
            )
            moved += len(updates)
    folders = 0
    for b in bind.execute(sa.select(broadcasts.c.id, broadcasts.c.meta).where(broadcasts.c.kind == "live")):
        meta = b.meta if isinstance(b.meta, dict) else None
        if meta is None or not isinstance(meta.get("dir"), str):
            continue
        rel = folder_form(meta["dir"])
        if rel is not None and rel != meta["dir"]:
            bind.execute(
                sa.update(broadcasts).where(broadcasts.c.id == b.id).values(meta={**meta, "dir": rel})
            )
            folders += 1
    if moved or kept or folders:
        logger.info(
            "0007: recording paths relative to %s: %d file row(s) and %d broadcast folder(s) rewritten, "
            "%d file row(s) left as they were",
            data_dir,
            moved,
            folders,
            kept,
        )


def downgrade() -> None:
    pass
