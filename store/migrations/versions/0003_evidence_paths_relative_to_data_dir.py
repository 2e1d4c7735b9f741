"""Evidence paths relative to the data directory.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Before this, `alerts.evidence_dir` (and the `evidence.dir`/`evidence.manifest` of the stored alert
payload, and `evidence_dir` of the price claims a payload cites) held the path as the writer saw it:
relative to whatever folder the scan or monitor ran in (`livewatch-data/evidence/<id>`), or absolute.
From another folder, or after the data directory moved, the review page and export found nothing.
Now they are stored relative to the data directory (`evidence/<id>`) and resolved when read
(store.paths). This revision rewrites existing rows:

- an absolute path inside the data directory → relative to it;
- a relative path that, taken from the current folder, lies inside the data directory → relative to it;
- any other relative path whose tail `evidence/<name>` exists in the data directory → that tail (the
  writer always made `<data dir>/evidence/<alert id>`; the folder it ran in is not known any more);
- anything else is left as it is and logged (a folder outside the data directory, or one that is gone).

The data directory comes from `config.attributes["data_dir"]` (store.db passes the one it was opened
for), else the SQLite database file's folder. Without either (PostgreSQL opened bare) nothing is
rewritten and a warning says so. The logic is copied here, not imported, so that this revision keeps
meaning what it meant when it was written. Data only: the schema does not change; downgrade keeps the
rewritten paths (they stay valid for a reader resolving them against the data directory).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger("store.migrations.0003")


def _under(path: Path, root: Path) -> str | None:
    for p, r in ((path, root), (path.resolve(), root.resolve())):
        try:
            rel = p.relative_to(r)
        except ValueError:
            continue
        return rel.as_posix() if rel.parts else None
    return None


def relocate(stored: str, data_dir: Path, cwd: Path) -> str | None:
    """The data-dir-relative form of a stored path, or None to leave it as it is."""
    p = Path(stored)
    if p.is_absolute():
        return _under(p, data_dir)
    inside = _under(cwd / p, data_dir)
    if inside is not None:
        return inside
    parts = PurePosixPath(p.as_posix()).parts
    if "evidence" in parts:
        i = len(parts) - 1 - parts[::-1].index("evidence")
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
        logger.warning("0003: evidence paths are rewritten only when migrating a live database")
        return
    bind = op.get_bind()
    data_dir = _data_dir(bind)
    alerts = sa.table(
        "alerts",
        sa.column("id", sa.String),
        sa.column("evidence_dir", sa.Text),
        sa.column("payload", sa.JSON),
    )
    rows = bind.execute(sa.select(alerts.c.id, alerts.c.evidence_dir, alerts.c.payload)).all()
    if data_dir is None:
        if any(r.evidence_dir for r in rows):
            logger.warning(
                "0003: no data directory known for %s; stored evidence paths were left as they are",
                bind.engine.url.render_as_string(hide_password=True),
            )
        return
    cwd = Path(os.getcwd())
    memo: dict[str, str | None] = {}

    def new_form(stored: str) -> str | None:
        if stored not in memo:
            memo[stored] = relocate(stored, data_dir, cwd)
        return memo[stored]

    moved = kept = 0
    for r in rows:
        updates: dict[str, Any] = {}
        if r.evidence_dir:
            rel = new_form(r.evidence_dir)
            if rel is None:
                kept += 1
                logger.warning(
                    "0003: alert %s: evidence path %s is not inside the data directory %s; left as it is",
                    r.id,
                    r.evidence_dir,
                    data_dir,
                )
            elif rel != r.evidence_dir:
                updates["evidence_dir"] = rel
        payload = r.payload if isinstance(r.payload, dict) else None
        if payload is not None:
            new_payload = _payload(payload, updates.get("evidence_dir"), new_form)
            if new_payload is not payload:
                updates["payload"] = new_payload
        if updates:
            moved += 1
            bind.execute(sa.update(alerts).where(alerts.c.id == r.id).values(**updates))
    if moved or kept:
        logger.info(
            "0003: evidence paths relative to %s: %d alert(s) rewritten, %d left as they were",
            data_dir,
            moved,
            kept,
        )


def _payload(payload: dict[str, Any], evidence_dir: str | None, new_form: Any) -> dict[str, Any]:
    out = payload
    ev = payload.get("evidence")
    if evidence_dir and isinstance(ev, dict):
        out = {**out, "evidence": {**ev, "dir": evidence_dir, "manifest": f"{evidence_dir}/manifest.json"}}
    details = payload.get("details")
    if isinstance(details, dict) and isinstance(details.get("contradicts"), list):
        changed = False
        items = []
        for c in details["contradicts"]:
            if isinstance(c, dict) and isinstance(c.get("evidence_dir"), str):
                rel = new_form(c["evidence_dir"])
                if rel is not None and rel != c["evidence_dir"]:
                    c = {**c, "evidence_dir": rel}
                    changed = True
            items.append(c)
        if changed:
            out = {**out, "details": {**details, "contradicts": items}}
    return out


def downgrade() -> None:
    pass
