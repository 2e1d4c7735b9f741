"""What keeps the review queue, statistics and search fast at a million alerts: derived columns of
`alerts`, maintained count tables, the text-search index, and the triggers that keep them true.

Derived, never written by the application (the database's triggers own them, so every writer — the
scan, the monitor, a bulk copy by SQL — keeps them right):

- `alerts.moment_ts`: when the moment was broadcast (`start_ts`, else the broadcast's `started_ts` +
  `start_s`; NULL when unknown), recomputed when a broadcast's start is refined;
- `alerts.time_ts`: the queue's time, `moment_ts` else `created_ts` (the scan's time);
- `alerts.status` / `alerts.decision_id`: the latest status-bearing decision (decisions are append-only);
- `alert_facets` (stream, category, rule, severity, source, status → n): the queue's facet counts;
- `alert_hourly` (UTC hour, status → n): per-day statistics in any whole-hour time zone;
- `alert_daily` (UTC day, dimension, key, status → n) for dimensions stream, category and rule;
- `alert_monthly` (UTC month, dimension, key, status → n), the same rolled up by calendar month (revision
  0008), so statistics for a long period sum a row per month, not one per day, for each stream.
  Count rows are upserted (n ± 1) and may reach 0; readers ignore zeros.
- search: SQLite FTS5 (`alerts_fts`, trigram tokenizer, external content keyed by the alerts' rowid);
  PostgreSQL a pg_trgm GIN index on the searchable columns joined (`ix_alerts_search_trgm`), where the
  extension can be had (else searches scan, and a warning says so).

SQLite reuses rowids only through a table rebuild or VACUUM; both are followed by `install(...,
rebuild=True)` (store.migrations does it after every upgrade of a database that had these objects).
`install` is idempotent: it drops and recreates the triggers and, with `rebuild`, recomputes the
derived columns, the counts and the search index from the rows (one statement each; minutes at 10^6).

Concurrency: triggers run inside the writer's transaction. On PostgreSQL, concurrent writers
serialize on the count rows they share (one row lock per bucket and key); transactions that insert
many alerts in different orders can deadlock on them, and PostgreSQL then aborts one, which the
writer retries like any serialization failure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, text

__all__ = [
    "COUNT_TABLES",
    "FTS_TABLE",
    "MONTHLY_TABLE",
    "PG_SEARCH_INDEX",
    "SEARCH_COLUMNS",
    "drop_triggers",
    "install",
    "installed",
    "is_search_object",
    "monthly_rebuild_statements",
    "pg_search_available",
    "rebuild",
    "rebuild_counts",
    "search_expression_sql",
]

logger = logging.getLogger(__name__)

FTS_TABLE = "alerts_fts"
PG_SEARCH_INDEX = "ix_alerts_search_trgm"
COUNT_TABLES = ("alert_facets", "alert_hourly", "alert_daily")  # made by revision 0005
MONTHLY_TABLE = "alert_monthly"  # made by revision 0008
SEARCH_COLUMNS = ("text", "context", "rule_id", "id", "law")
NO_STREAM = ""  # alert_facets/alert_daily key for alerts without a stream (a primary key cannot be NULL)

_SQLITE_TRIGGERS = (
    "lw_alerts_ai",
    "lw_alerts_au_counts",
    "lw_alerts_au_search",
    "lw_alerts_ad",
    "lw_decisions_ai",
    "lw_broadcasts_au",
)
_PG_TRIGGERS = (
    ("lw_alerts_bi", "alerts"),
    ("lw_alerts_counts", "alerts"),
    ("lw_decisions_ai", "decisions"),
    ("lw_broadcasts_au", "broadcasts"),
)
_PG_FUNCTIONS = ("lw_alerts_derive", "lw_alerts_counts", "lw_decisions_status", "lw_broadcasts_moment")

Execute = Callable[[str], Any]


def is_search_object(name: str | None) -> bool:
    """Objects made here outside the models (for Alembic's autogenerate to leave alone)."""
    return bool(name) and (str(name).startswith(FTS_TABLE) or name == PG_SEARCH_INDEX)


def search_expression_sql(table: str = "") -> str:
    """PostgreSQL: the indexed expression a search compares with (separator U+001F between fields);
    queries name the table (`table="alerts"`), which PostgreSQL still matches with the index."""
    prefix = f"{table}." if table else ""
    return " || chr(31) || ".join(f"coalesce({prefix}{c}, '')" for c in SEARCH_COLUMNS)


# -- count statements (one dialect-neutral template, OLD/NEW and +1/-1 filled in) ---------------------


def _hour(row: str, dialect: str) -> str:
    if dialect == "sqlite":
        return f"(CAST({row}.time_ts / 3600 AS INTEGER) * 3600)"
    return f"(floor({row}.time_ts / 3600) * 3600)::bigint"


def _day(row: str, dialect: str) -> str:
    if dialect == "sqlite":
        return f"(CAST({row}.time_ts / 86400 AS INTEGER) * 86400)"
    return f"(floor({row}.time_ts / 86400) * 86400)::bigint"


def _month(ts: str, dialect: str) -> str:
    """The start (epoch seconds) of the UTC calendar month of the epoch-seconds expression `ts`."""
    if dialect == "sqlite":
        return f"CAST(strftime('%s', {ts}, 'unixepoch', 'start of month') AS INTEGER)"
    return f"extract(epoch FROM date_trunc('month', to_timestamp({ts}) AT TIME ZONE 'UTC'))::bigint"


_DIMS = ("stream", "category", "rule")


def _count_statements(row: str, sign: int, dialect: str, monthly: bool = True) -> list[str]:
    """Upserts adding `sign` to every count row the alert `row` (OLD or NEW) belongs to (`monthly`:
    alert_monthly's too, which exists from revision 0008 on)."""
    where = f"WHERE {row}.time_ts IS NOT NULL" if dialect == "sqlite" else ""
    stream = f"coalesce({row}.stream_id, '{NO_STREAM}')"

    def add(table: str) -> str:
        return f"{table}.n + excluded.n" if dialect == "postgresql" else "n + excluded.n"

    out = [
        "INSERT INTO alert_facets (stream_id, category, rule_id, severity, source, status, n) "
        f"SELECT {stream}, {row}.category, {row}.rule_id, {row}.severity, {row}.source, {row}.status, {sign} "
        f"{where} ON CONFLICT (stream_id, category, rule_id, severity, source, status) "
        f"DO UPDATE SET n = {add('alert_facets')}",
        f"INSERT INTO alert_hourly (hour_ts, status, n) SELECT {_hour(row, dialect)}, {row}.status, {sign} "
        f"{where} ON CONFLICT (hour_ts, status) DO UPDATE SET n = {add('alert_hourly')}",
    ]
    for dim, key in zip(_DIMS, (stream, f"{row}.category", f"{row}.rule_id"), strict=True):
        out.append(
            "INSERT INTO alert_daily (day_ts, dim, key, status, n) "
            f"SELECT {_day(row, dialect)}, '{dim}', {key}, {row}.status, {sign} {where} "
            f"ON CONFLICT (day_ts, dim, key, status) DO UPDATE SET n = {add('alert_daily')}"
        )
        if monthly:
            out.append(
                f"INSERT INTO {MONTHLY_TABLE} (month_ts, dim, key, status, n) "
                f"SELECT {_month(f'{row}.time_ts', dialect)}, '{dim}', {key}, {row}.status, {sign} {where} "
                f"ON CONFLICT (month_ts, dim, key, status) DO UPDATE SET n = {add(MONTHLY_TABLE)}"
            )
    return out


_COUNTED = ("time_ts", "status", "stream_id", "category", "rule_id", "severity", "source")
_MOMENT = (
    "coalesce({r}.start_ts, (SELECT started_ts FROM broadcasts WHERE id = {r}.broadcast_id) + {r}.start_s)"
)


def _sqlite_ddl(monthly: bool = True) -> list[str]:
    fts_cols = ", ".join(SEARCH_COLUMNS)
    new_vals = ", ".join(f"NEW.{c}" for c in SEARCH_COLUMNS)
    old_vals = ", ".join(f"OLD.{c}" for c in SEARCH_COLUMNS)
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _COUNTED)
    nl = ";\n  "
    return [
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5({fts_cols}, content='alerts', "
        "content_rowid='rowid', tokenize='trigram')",
        # the insert sets the derived columns; the update trigger below then counts the row
        "CREATE TRIGGER lw_alerts_ai AFTER INSERT ON alerts BEGIN\n  "
        f"UPDATE alerts SET moment_ts = {_MOMENT.format(r='NEW')}, "
        f"time_ts = coalesce({_MOMENT.format(r='NEW')}, NEW.created_ts), "
        "status = coalesce(NEW.status, 'unreviewed') WHERE rowid = NEW.rowid;\n  "
        f"INSERT INTO {FTS_TABLE} (rowid, {fts_cols}) VALUES (NEW.rowid, {new_vals});\nEND",
        f"CREATE TRIGGER lw_alerts_au_counts AFTER UPDATE OF {', '.join(_COUNTED)} ON alerts "
        f"WHEN {changed} BEGIN\n  "
        + nl.join(
            _count_statements("OLD", -1, "sqlite", monthly) + _count_statements("NEW", 1, "sqlite", monthly)
        )
        + ";\nEND",
        f"CREATE TRIGGER lw_alerts_au_search AFTER UPDATE OF {', '.join(SEARCH_COLUMNS)} ON alerts BEGIN\n  "
        f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}, rowid, {fts_cols}) VALUES ('delete', OLD.rowid, {old_vals});\n  "
        f"INSERT INTO {FTS_TABLE} (rowid, {fts_cols}) VALUES (NEW.rowid, {new_vals});\nEND",
        "CREATE TRIGGER lw_alerts_ad AFTER DELETE ON alerts BEGIN\n  "
        + nl.join(_count_statements("OLD", -1, "sqlite", monthly))
        + f";\n  INSERT INTO {FTS_TABLE} ({FTS_TABLE}, rowid, {fts_cols}) VALUES ('delete', OLD.rowid, {old_vals});"
        "\nEND",
        "CREATE TRIGGER lw_decisions_ai AFTER INSERT ON decisions WHEN NEW.decision != 'note' BEGIN\n  "
        "UPDATE alerts SET status = NEW.decision, decision_id = NEW.id "
        "WHERE id = NEW.alert_id AND (decision_id IS NULL OR decision_id < NEW.id);\nEND",
        "CREATE TRIGGER lw_broadcasts_au AFTER UPDATE OF started_ts ON broadcasts "
        "WHEN OLD.started_ts IS NOT NEW.started_ts BEGIN\n  "
        "UPDATE alerts SET moment_ts = NEW.started_ts + start_s, "
        "time_ts = coalesce(NEW.started_ts + start_s, created_ts) "
        "WHERE broadcast_id = NEW.id AND start_ts IS NULL;\nEND",
    ]


def _pg_ddl(monthly: bool = True) -> list[str]:
    old = ";\n      ".join(_count_statements("OLD", -1, "postgresql", monthly))
    new = ";\n      ".join(_count_statements("NEW", 1, "postgresql", monthly))
    return [
        "CREATE OR REPLACE FUNCTION lw_alerts_derive() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n"
        f"  NEW.moment_ts := {_MOMENT.format(r='NEW')};\n"
        "  NEW.time_ts := coalesce(NEW.moment_ts, NEW.created_ts);\n"
        "  NEW.status := coalesce(NEW.status, 'unreviewed');\n"
        "  RETURN NEW;\nEND $$",
        "CREATE OR REPLACE FUNCTION lw_alerts_counts() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n"
        "  IF TG_OP = 'UPDATE' THEN\n"
        f"    IF ({', '.join('OLD.' + c for c in _COUNTED)}) IS NOT DISTINCT FROM "
        f"({', '.join('NEW.' + c for c in _COUNTED)}) THEN RETURN NULL; END IF;\n"
        "  END IF;\n"
        "  IF TG_OP IN ('UPDATE', 'DELETE') THEN\n"
        f"    IF OLD.time_ts IS NOT NULL THEN\n      {old};\n    END IF;\n  END IF;\n"
        "  IF TG_OP IN ('UPDATE', 'INSERT') THEN\n"
        f"    IF NEW.time_ts IS NOT NULL THEN\n      {new};\n    END IF;\n  END IF;\n"
        "  RETURN NULL;\nEND $$",
        "CREATE OR REPLACE FUNCTION lw_decisions_status() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n"
        "  IF NEW.decision <> 'note' THEN\n"
        "    UPDATE alerts SET status = NEW.decision, decision_id = NEW.id\n"
        "    WHERE id = NEW.alert_id AND (decision_id IS NULL OR decision_id < NEW.id);\n"
        "  END IF;\n  RETURN NULL;\nEND $$",
        "CREATE OR REPLACE FUNCTION lw_broadcasts_moment() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n"
        "  IF NEW.started_ts IS DISTINCT FROM OLD.started_ts THEN\n"
        "    UPDATE alerts SET moment_ts = NEW.started_ts + start_s,\n"
        "      time_ts = coalesce(NEW.started_ts + start_s, created_ts)\n"
        "    WHERE broadcast_id = NEW.id AND start_ts IS NULL;\n"
        "  END IF;\n  RETURN NULL;\nEND $$",
        "CREATE TRIGGER lw_alerts_bi BEFORE INSERT ON alerts FOR EACH ROW EXECUTE FUNCTION lw_alerts_derive()",
        f"CREATE TRIGGER lw_alerts_counts AFTER INSERT OR DELETE OR UPDATE OF {', '.join(_COUNTED)} ON alerts "
        "FOR EACH ROW EXECUTE FUNCTION lw_alerts_counts()",
        "CREATE TRIGGER lw_decisions_ai AFTER INSERT ON decisions FOR EACH ROW "
        "EXECUTE FUNCTION lw_decisions_status()",
        "CREATE TRIGGER lw_broadcasts_au AFTER UPDATE OF started_ts ON broadcasts FOR EACH ROW "
        "EXECUTE FUNCTION lw_broadcasts_moment()",
    ]


def _drop_statements(dialect: str) -> list[str]:
    if dialect == "sqlite":
        return [f"DROP TRIGGER IF EXISTS {t}" for t in _SQLITE_TRIGGERS]
    return [f"DROP TRIGGER IF EXISTS {t} ON {table}" for t, table in _PG_TRIGGERS]


def _rebuild_statements(dialect: str, monthly: bool = True) -> list[str]:
    latest = "(SELECT max(d.id) FROM decisions d WHERE d.alert_id = alerts.id AND d.decision <> 'note')"
    return [
        f"UPDATE alerts SET moment_ts = {_MOMENT.format(r='alerts')}, decision_id = {latest}",
        "UPDATE alerts SET time_ts = coalesce(moment_ts, created_ts), status = coalesce("
        "(SELECT d.decision FROM decisions d WHERE d.id = alerts.decision_id), 'unreviewed')",
        *_count_rebuild_statements(dialect, monthly),
    ]


def monthly_rebuild_statements(dialect: str) -> list[str]:
    """alert_monthly from alert_daily (UTC days nest in UTC months: a sum per month, not a pass over
    the alerts)."""
    return [
        f"DELETE FROM {MONTHLY_TABLE}",
        f"INSERT INTO {MONTHLY_TABLE} (month_ts, dim, key, status, n) "
        f"SELECT {_month('day_ts', dialect)}, dim, key, status, sum(n) FROM alert_daily "
        "WHERE n <> 0 GROUP BY 1, 2, 3, 4",
    ]


def _count_rebuild_statements(dialect: str, monthly: bool = True) -> list[str]:
    out = [
        *(f"DELETE FROM {t}" for t in COUNT_TABLES),
        "INSERT INTO alert_facets (stream_id, category, rule_id, severity, source, status, n) "
        f"SELECT coalesce(stream_id, '{NO_STREAM}'), category, rule_id, severity, source, status, count(*) "
        "FROM alerts WHERE time_ts IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6",
        f"INSERT INTO alert_hourly (hour_ts, status, n) SELECT {_hour('alerts', dialect)}, status, count(*) "
        "FROM alerts WHERE time_ts IS NOT NULL GROUP BY 1, 2",
    ]
    for dim, key in (
        ("stream", f"coalesce(stream_id, '{NO_STREAM}')"),
        ("category", "category"),
        ("rule", "rule_id"),
    ):
        out.append(
            "INSERT INTO alert_daily (day_ts, dim, key, status, n) "
            f"SELECT {_day('alerts', dialect)}, '{dim}', {key}, status, count(*) "
            "FROM alerts WHERE time_ts IS NOT NULL GROUP BY 1, 2, 3, 4"
        )
    if monthly:
        out += monthly_rebuild_statements(dialect)
    if dialect == "sqlite":
        out.append(f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}) VALUES ('rebuild')")
    return out


def drop_triggers(execute: Execute, dialect: str) -> None:
    """Remove the triggers (before a bulk load or a table rebuild; `install` puts them back)."""
    for s in _drop_statements(dialect):
        execute(s)


def rebuild(execute: Execute, dialect: str, *, monthly: bool = True) -> None:
    """Recompute the derived columns, the count tables and (SQLite) the search index from the rows."""
    for s in _rebuild_statements(dialect, monthly):
        execute(s)


def rebuild_counts(execute: Execute, dialect: str, *, monthly: bool = True) -> None:
    """Recompute the count tables and (SQLite) the search index from the rows, trusting the derived
    columns (a bulk load that wrote them itself; `rebuild` recomputes those too)."""
    for s in _count_rebuild_statements(dialect, monthly):
        execute(s)


def install(execute: Execute, dialect: str, *, rebuild_data: bool = True, monthly: bool = True) -> None:
    """(Re)create the triggers (and the SQLite search table); with `rebuild_data`, first recompute
    everything derived, with the triggers off (a bulk UPDATE would otherwise count each row).
    `execute` runs one SQL statement: a connection's, or Alembic's `op.execute`. `monthly=False`
    leaves out alert_monthly, for a database before revision 0008 (revision 0005 run alone)."""
    if dialect not in ("sqlite", "postgresql"):
        raise ValueError(f"no triggers for database dialect {dialect!r}")
    drop_triggers(execute, dialect)
    ddl = _sqlite_ddl(monthly) if dialect == "sqlite" else _pg_ddl(monthly)
    if dialect == "sqlite":
        execute(ddl.pop(0))  # the search table, which the rebuild fills
    if rebuild_data:
        rebuild(execute, dialect, monthly=monthly)
    for s in ddl:
        execute(s)


def installed(conn: Connection) -> bool:
    """Whether this database has the triggers (a database at revision 0005 or later)."""
    if conn.dialect.name == "sqlite":
        q = "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = 'lw_decisions_ai'"
    else:
        q = "SELECT count(*) FROM pg_trigger WHERE tgname = 'lw_decisions_ai' AND NOT tgisinternal"
    return bool(conn.execute(text(q)).scalar())


def pg_search_available(conn: Connection) -> bool:
    """Whether the PostgreSQL trigram search index exists in this schema."""
    return bool(
        conn.execute(
            text("SELECT count(*) FROM pg_indexes WHERE indexname = :n AND schemaname = current_schema()"),
            {"n": PG_SEARCH_INDEX},
        ).scalar()
    )


def create_pg_search_index(conn: Connection) -> bool:
    """pg_trgm and its GIN index, if this role may create the extension; False (and a warning) if not."""
    try:
        with conn.begin_nested():
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except Exception as e:
        logger.warning(
            "PostgreSQL: pg_trgm not available (%s); alert text search will scan the table",
            str(e).splitlines()[0],
        )
        return False
    schema = conn.execute(
        text(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'pg_trgm'"
        )
    ).scalar()
    conn.execute(
        text(
            f"CREATE INDEX IF NOT EXISTS {PG_SEARCH_INDEX} ON alerts USING gin "
            f'(({search_expression_sql()}) "{schema}".gin_trgm_ops)'
        )
    )
    return True
