"""Database engine and sessions.

SQLite (in the data directory) by default; any SQLAlchemy URL (e.g. postgresql+psycopg://...) when
configured with LIVEWATCH_DB_URL or the root config. Opening a database brings its schema to the newest
Alembic revision (`store.migrations.ensure_schema`: a cheap version check when it is already there; a
locked, all-or-nothing upgrade when not, safe with several processes opening it at once). SQLite runs in
WAL mode so the review app can read while a monitor writes.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from store.migrations import ensure_schema

__all__ = ["Database", "default_data_dir"]

logger = logging.getLogger(__name__)


def default_data_dir() -> Path:
    """--data-dir, else $LIVEWATCH_DATA_DIR, else ./livewatch-data (resolved by the caller's order)."""
    return Path(os.environ.get("LIVEWATCH_DATA_DIR", "livewatch-data"))


class Database:
    """Owns one engine and its session factory. Raises store.migrations.SchemaError for a database it
    cannot migrate (made by a newer livewatch, or a pre-migration one that differs from the baseline)."""

    def __init__(self, url: str, data_dir: Path | None = None) -> None:
        self.url = url
        # stored evidence paths are relative to this folder (store.paths); sessions carry it in .info
        self.data_dir = Path(data_dir).absolute() if data_dir is not None else None
        kwargs: dict[str, object] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._ensure_schema()
        self.sessions = sessionmaker(self.engine, expire_on_commit=False, info={"data_dir": self.data_dir})

    def _ensure_schema(self) -> None:
        """Migrate to head. On SQLite, openers racing on a new file can hit a lock-upgrade deadlock that
        SQLite reports at once as 'database is locked' (the busy timeout cannot help there): retry."""
        delay = 0.05
        deadline = time.monotonic() + 60
        while True:
            try:
                ensure_schema(self.engine, data_dir=self.data_dir)
                return
            except OperationalError as e:
                if not self.url.startswith("sqlite") or "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                logger.info("database busy while checking its schema; retrying in %.2fs", delay)
                self.engine.dispose()
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    @classmethod
    def for_data_dir(cls, data_dir: Path, url: str | None = None) -> Database:
        url = url or os.environ.get("LIVEWATCH_DB_URL")
        if not url:
            data_dir.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{(data_dir / 'livewatch.db').resolve()}"
        return cls(url, data_dir)

    def session(self) -> Session:
        return self.sessions()

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
