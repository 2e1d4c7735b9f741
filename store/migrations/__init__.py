"""Schema migrations: Alembic revisions in `versions/`, run in-process when a database is opened.

`ensure_schema(engine)` brings a database to the newest revision (the head):

* Up to date (the usual start-up): one connection reads `alembic_version` and compares it with the head
  found by scanning `versions/` as text. Alembic is not even imported, no lock is taken, so opening a
  database costs about what `create_all` did and a reader can start while a writer is mid-transaction.
* Behind, or empty: takes an exclusive lock, reads the revision again under it (another process may have
  just migrated), and runs `alembic upgrade head` on that same connection, in one transaction.
  SQLite: `BEGIN IMMEDIATE` (the database's write lock; other openers wait up to the busy timeout) with
  foreign-key enforcement off while tables are rebuilt and `PRAGMA foreign_key_check` before COMMIT.
  PostgreSQL: `pg_advisory_xact_lock`, released by COMMIT or ROLLBACK. Both have transactional DDL, so a
  failed revision leaves the database exactly at the revision it had.
* Made by `create_all` before migrations existed (our tables, no `alembic_version`): if its tables and
  columns are exactly those of the baseline revision it is stamped at the baseline and then upgraded;
  otherwise `SchemaError` names the differences and nothing is changed.
* At a revision this code does not know (a newer livewatch migrated it): `SchemaError`, nothing changed.

Concurrency contract: any number of processes may call `ensure_schema` on the same database at once;
exactly one migrates, the others wait for its commit and then find the head. Runs on the caller's thread.

Developers: every change to `store/models.py` needs a revision, made with
`python -m store.migrations revision -m "what changed"` (see `__main__.py`).
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Connection, Engine, Integer, String, create_engine, inspect, text
from sqlalchemy.types import TypeEngine

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

__all__ = [
    "BASELINE",
    "SCRIPT_LOCATION",
    "VERSION_TABLE",
    "RevisionFile",
    "SchemaError",
    "alembic_config",
    "compare_type",
    "current_revisions",
    "ensure_schema",
    "include_object",
    "read_revisions",
]

logger = logging.getLogger(__name__)

SCRIPT_LOCATION = Path(__file__).resolve().parent
BASELINE = "0001"  # the schema as `Base.metadata.create_all` made it before migrations existed
VERSION_TABLE = "alembic_version"
# pg_advisory_xact_lock key: a fixed 63-bit number ("livewatch-schema"), the same in every process.
_PG_LOCK_KEY = 0x6C77_7363_6865_6D61


class SchemaError(RuntimeError):
    """The database cannot be brought to this code's schema without a person deciding how."""


@dataclass(frozen=True, slots=True)
class RevisionFile:
    revision: str
    down_revisions: tuple[str, ...]
    path: Path


_ASSIGN = re.compile(r"^(revision|down_revision)\s*(?::[^=]+)?=\s*(.+?)\s*$", re.MULTILINE)


def read_revisions(script_location: Path = SCRIPT_LOCATION) -> dict[str, RevisionFile]:
    """Revisions in `versions/` by id, read as text (no Alembic import: this is on the start-up path).

    A test compares the result with Alembic's own ScriptDirectory, so the two cannot drift apart.
    """
    out: dict[str, RevisionFile] = {}
    for path in sorted((script_location / "versions").glob("*.py")):
        if path.name.startswith("_"):
            continue
        found = {m[1]: m[2] for m in _ASSIGN.finditer(path.read_text(encoding="utf-8"))}
        if "revision" not in found:
            raise SchemaError(f"{path}: no `revision = ...` line")
        rev = ast.literal_eval(found["revision"])
        down = ast.literal_eval(found.get("down_revision", "None"))
        downs = () if down is None else (down,) if isinstance(down, str) else tuple(down)
        if rev in out:
            raise SchemaError(f"{path}: revision {rev!r} also in {out[rev].path}")
        out[rev] = RevisionFile(rev, downs, path)
    return out


def _heads(revisions: dict[str, RevisionFile]) -> frozenset[str]:
    below = {d for r in revisions.values() for d in r.down_revisions}
    return frozenset(r for r in revisions if r not in below)


def current_revisions(conn: Connection) -> frozenset[str] | None:
    """Revisions recorded in the database; None when it has no `alembic_version` table."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    return frozenset(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())


def compare_type(
    context: MigrationContext,
    inspected_column: Column[Any],
    metadata_column: Column[Any],
    inspected_type: TypeEngine[Any],
    metadata_type: TypeEngine[Any],
) -> bool | None:
    """Alembic type comparison, except where SQLite stores both types the same way.

    SQLite ignores VARCHAR lengths and stores every INTEGER kind as 64 bits, so a change of String
    length or Integer -> BigInteger needs no table rebuild there; revisions skip such ALTERs on SQLite
    and this keeps autogenerate and the schema test from asking for them. None = Alembic's default.
    """
    if context.dialect.name != "sqlite":
        return None
    for family in (String, Integer):
        if isinstance(inspected_type, family) and isinstance(metadata_type, family):
            return False
    return None


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Autogenerate filter: the search objects of store.scale (FTS5 tables, the trigram index) are made
    by SQL, not by the models, and are left out of the comparison."""
    from store.scale import is_search_object

    return not (reflected and compare_to is None and is_search_object(name))


def alembic_config(
    connection: Connection | None = None, *, url: str | None = None, script_location: Path = SCRIPT_LOCATION
) -> Config:
    """An Alembic Config without alembic.ini: our script location, ids `NNNN`, files `NNNN_slug.py`."""
    from alembic.config import Config

    cfg = Config()
    # ConfigParser interpolates '%': double it in paths and in the file template.
    cfg.set_main_option("script_location", str(script_location).replace("%", "%%"))
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def ensure_schema(
    engine: Engine, *, script_location: Path = SCRIPT_LOCATION, data_dir: Path | None = None
) -> str:
    """Bring the database to head. Returns what was done: 'current', 'upgraded' or 'stamped+upgraded'.

    `data_dir` is the data directory the database belongs to; revisions that rewrite stored paths
    (0003) read it from `config.attributes["data_dir"]` (for SQLite, the database file's folder if not given).
    """
    revisions = read_revisions(script_location)
    heads = _heads(revisions)
    if len(heads) != 1:
        raise SchemaError(
            f"migrations in {script_location} have {len(heads)} heads {sorted(heads)}; "
            "merge them (`python -m store.migrations merge`)"
        )
    with engine.connect() as conn:
        current = current_revisions(conn)
    if current == heads:
        return "current"
    with engine.connect() as conn, _migration_transaction(conn):
        current = current_revisions(conn)  # again, under the lock: someone may have migrated meanwhile
        if current == heads:
            logger.info("database schema: another process migrated it to %s", ",".join(heads))
            return "current"
        return _migrate(conn, current, revisions, script_location, data_dir)


def _migrate(
    conn: Connection,
    current: frozenset[str] | None,
    revisions: dict[str, RevisionFile],
    script_location: Path,
    data_dir: Path | None = None,
) -> str:
    from alembic import command

    where = conn.engine.url.render_as_string(hide_password=True)
    cfg = alembic_config(conn, script_location=script_location)
    cfg.attributes["data_dir"] = data_dir
    action = "upgraded"
    if current is None:
        baseline = _baseline_columns(script_location)
        present = set(inspect(conn).get_table_names())
        if present & set(baseline):
            _check_legacy(conn, baseline, where)
            logger.warning(
                "database schema: %s predates migrations and matches the baseline; stamping %s",
                where,
                BASELINE,
            )
            command.stamp(cfg, BASELINE)
            action = "stamped+upgraded"
    elif unknown := current - set(revisions):
        raise SchemaError(
            f"{where} is at schema revision {','.join(sorted(unknown))}, which this livewatch "
            "does not know (a newer version migrated it); upgrade livewatch"
        )
    logger.info(
        "database schema: upgrading %s from %s to head",
        where,
        ",".join(sorted(current)) if current else "nothing",
    )
    # store.scale's triggers: a table rebuild (batch mode on SQLite) would drop some and break others
    # (a trigger naming a table that is briefly gone), so they stay off while revisions run (0005 leaves
    # them to us) and go on at the end, with the derived data recomputed once (rowids may have changed)
    from store import scale

    cfg.attributes["scale_deferred"] = True
    if current is not None and scale.installed(conn):
        scale.drop_triggers(lambda sql: conn.execute(text(sql)), conn.dialect.name)
    command.upgrade(cfg, "head")
    if _has_table(conn, "alert_facets"):
        scale.install(lambda sql: conn.execute(text(sql)), conn.dialect.name, rebuild_data=True)
    return action


def _has_table(conn: Connection, name: str) -> bool:
    return bool(inspect(conn).has_table(name))


def _baseline_columns(script_location: Path) -> dict[str, set[str]]:
    """Tables and columns the baseline revision creates (run on a scratch in-memory SQLite)."""
    from alembic import command

    scratch = create_engine("sqlite://")
    try:
        with scratch.connect() as conn:
            command.upgrade(alembic_config(conn, script_location=script_location), BASELINE)
            insp = inspect(conn)
            return {
                t: {c["name"] for c in insp.get_columns(t)}
                for t in insp.get_table_names()
                if t != VERSION_TABLE
            }
    finally:
        scratch.dispose()


def _check_legacy(conn: Connection, baseline: dict[str, set[str]], where: str) -> None:
    insp = inspect(conn)
    present = set(insp.get_table_names())
    problems = [f"missing table {t}" for t in sorted(set(baseline) - present)]
    for table in sorted(set(baseline) & present):
        have = {c["name"] for c in insp.get_columns(table)}
        problems += [f"missing column {table}.{c}" for c in sorted(baseline[table] - have)]
        problems += [f"unexpected column {table}.{c}" for c in sorted(have - baseline[table])]
    if problems:
        raise SchemaError(
            f"{where} has livewatch tables but no {VERSION_TABLE} table, and they differ from the baseline "
            f"schema (revision {BASELINE}): {'; '.join(problems)}. It was made by a development build older "
            "than the baseline; nothing was changed. Add the missing columns by hand (see "
            "store/migrations/versions) and open it again, or start a new database."
        )


@contextmanager
def _migration_transaction(conn: Connection) -> Iterator[None]:
    """One transaction holding the database's migration lock; commits on success, rolls back on error."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        with _sqlite_immediate(conn):
            yield
        return
    if dialect == "postgresql":
        # READ COMMITTED whatever the server's default: after waiting for the lock, the next statement
        # must see what the process that held it committed (a REPEATABLE READ snapshot would not).
        conn.execution_options(isolation_level="READ COMMITTED")
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    else:
        logger.warning(
            "database schema: no migration lock for %s; do not start two livewatch at once", dialect
        )
    try:
        yield
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


@contextmanager
def _sqlite_immediate(conn: Connection) -> Iterator[None]:
    # pysqlite only begins transactions before DML, so DDL would autocommit statement by statement.
    # Switch the driver to manual mode and BEGIN IMMEDIATE ourselves: DDL then sits in our transaction
    # and the write lock serializes concurrent openers (they wait on the busy timeout).
    raw = conn.connection.driver_connection
    previous = raw.isolation_level  # type: ignore[union-attr]
    enforced = conn.exec_driver_sql("PRAGMA foreign_keys").scalar()
    # Table rebuilds (batch mode) drop and recreate tables: enforcement must be off, and this pragma is
    # a no-op inside a transaction, so set it first; integrity is checked before COMMIT instead.
    conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
    conn.commit()
    raw.isolation_level = None  # type: ignore[union-attr]
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield
            bad = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if bad:
                raise SchemaError(f"migration left rows with broken foreign keys: {bad[:5]}")
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    finally:
        raw.isolation_level = previous  # type: ignore[union-attr]
        conn.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if enforced else 'OFF'}")
        conn.commit()
