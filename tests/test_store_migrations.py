"""Schema migrations: the meta-test (migrations at head == models), upgrades of existing databases, the
pre-migration (create_all) path, refusals, rollback of a failed revision, concurrent first opens, the
no-lock fast path, and the developer CLI. SQLite always; PostgreSQL where available (store_backends).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, select, text
from store_backends import BACKENDS, backend_url

from store.db import Database
from store.migrations import (
    _PG_LOCK_KEY,
    BASELINE,
    SCRIPT_LOCATION,
    VERSION_TABLE,
    SchemaError,
    alembic_config,
    compare_type,
    ensure_schema,
    include_object,
    read_revisions,
)
from store.models import AlertRow, Base, Decision

ROOT = Path(__file__).resolve().parents[1]
LEGACY_SQL = ROOT / "tests" / "data" / "store" / "legacy_create_all.sql"


def alembic_head(script_location: Path = SCRIPT_LOCATION) -> str:
    head = ScriptDirectory.from_config(alembic_config(script_location=script_location)).get_current_head()
    assert head is not None
    return head


def versions(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(VERSION_TABLE):
                return []
            return list(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
    finally:
        engine.dispose()


def schema_diffs(url: str) -> list[object]:
    """What autogenerate would change to make the database match store/models.py (empty = identical)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": compare_type, "include_object": include_object}
            )
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        engine.dispose()


def run_sql(url: str, *statements: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for s in statements:
                conn.execute(text(s))
    finally:
        engine.dispose()


def make_baseline_without_version(url: str) -> None:
    """A database as create_all left it before migrations: the baseline schema, no alembic_version."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            from alembic import command

            command.upgrade(alembic_config(conn), BASELINE)
            conn.commit()
        run_sql(url, f"DROP TABLE {VERSION_TABLE}")
    finally:
        engine.dispose()


def copy_script_location(tmp_path: Path) -> Path:
    where = tmp_path / "migrations"
    shutil.copytree(SCRIPT_LOCATION, where, ignore=shutil.ignore_patterns("__pycache__"))
    return where


def add_revision(where: Path, rev: str, body: str) -> None:
    down = alembic_head(where)
    (where / "versions" / f"{rev}_test.py").write_text(
        textwrap.dedent(f'''\
            """test revision {rev}"""
            import sqlalchemy as sa
            from alembic import op

            revision = "{rev}"
            down_revision = "{down}"
            branch_labels = None
            depends_on = None


            def upgrade() -> None:
            ''')
        + textwrap.indent(textwrap.dedent(body), "    ")
        + "\n\ndef downgrade() -> None:\n    pass\n",
        encoding="utf-8",
    )


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    with backend_url(request.param, tmp_path) as u:
        yield u


def insert_alert_with_decision(url: str) -> None:
    run_sql(
        url,
        "INSERT INTO broadcasts (id, kind, source, status, rules_version, meta, created_ts) "
        "VALUES ('b1', 'file', 'a.mp4', 'done', 'r1', '{\"k\": [1, 2]}', 1764000000.5)",
        "INSERT INTO alerts (id, broadcast_id, category, code, rule_id, severity, source, start_s, end_s, "
        "text, context, law, rules_version, evidence_status, payload, created_ts) VALUES ('a1', 'b1', "
        "'absolute_terms', 'A1', 'r', 'high', 'speech', 1.0, 2.0, '最低价', '', '', 'r1', 'done', "
        '\'{"text": "最低价"}\', 1764000001.25)',
        "INSERT INTO decisions (alert_id, decision, note, reviewer, created_ts) "
        "VALUES ('a1', 'confirmed', '', 'li', 1764000002.0)",
    )


# ---------------------------------------------------------------------------------------------------
# The meta-test


def test_migrations_at_head_produce_exactly_the_models_schema(url: str) -> None:
    """Fails when store/models.py changed without a revision: run
    `python -m store.migrations revision -m "what changed"`, review the file, commit both."""
    db = Database(url)
    db.dispose()
    assert versions(url) == [alembic_head()]
    diffs = schema_diffs(url)
    assert diffs == [], (
        f"store/models.py and the migrations at head differ: {diffs}\n"
        'make a revision: python -m store.migrations revision -m "what changed"'
    )


def test_revision_files_form_one_line_and_start_at_the_baseline() -> None:
    scanned = read_revisions()
    script = ScriptDirectory.from_config(alembic_config())
    alembic_view = {r.revision: tuple(r._all_down_revisions) for r in script.walk_revisions()}
    assert {r: f.down_revisions for r, f in scanned.items()} == alembic_view
    assert script.get_heads() == [alembic_head()]
    assert scanned[BASELINE].down_revisions == ()
    assert all(f.path.name.startswith(f"{r}_") for r, f in scanned.items())


# ---------------------------------------------------------------------------------------------------
# Existing databases


def test_database_made_by_create_all_before_migrations_is_stamped_and_upgraded(tmp_path: Path) -> None:
    """The SQLite file a user has from before migrations (a create_all schema with data) opens as before."""
    path = tmp_path / "livewatch.db"
    con = sqlite3.connect(path)
    con.executescript(LEGACY_SQL.read_text(encoding="utf-8"))
    con.close()
    url = f"sqlite:///{path}"
    assert versions(url) == []

    db = Database(url)
    with db.session() as s:
        alert = s.get(AlertRow, "0123456789abcdef0123")
        assert alert is not None
        assert alert.payload == {"alert_id": "0123456789abcdef0123", "text": "全网最低价", "score": 97.5}
        assert alert.start_ts == 1764000001.125
        assert [d.decision for d in s.scalars(select(Decision))] == ["confirmed"]
    db.dispose()
    assert versions(url) == [alembic_head()]
    assert schema_diffs(url) == []


def test_pre_migration_database_keeps_its_rows_on_both_backends(url: str) -> None:
    make_baseline_without_version(url)
    insert_alert_with_decision(url)
    db = Database(url)
    with db.session() as s:
        alert = s.get(AlertRow, "a1")
        assert alert is not None and alert.payload == {"text": "最低价"} and alert.created_ts == 1764000001.25
        assert s.scalar(select(Decision.reviewer)) == "li"
    db.dispose()
    assert versions(url) == [alembic_head()]
    assert schema_diffs(url) == []


def test_pre_migration_database_that_differs_from_the_baseline_is_refused_untouched(url: str) -> None:
    make_baseline_without_version(url)
    # what the first development build made: broadcasts had no meta column yet
    run_sql(url, "ALTER TABLE broadcasts DROP COLUMN meta")
    with pytest.raises(SchemaError, match=r"missing column broadcasts\.meta") as err:
        Database(url)
    assert "nothing was changed" in str(err.value)
    assert versions(url) == []


def test_database_migrated_by_a_newer_livewatch_is_refused_untouched(url: str) -> None:
    Database(url).dispose()
    run_sql(url, f"UPDATE {VERSION_TABLE} SET version_num = '9999'")
    with pytest.raises(SchemaError, match=r"9999, which this livewatch does not know.*upgrade livewatch"):
        Database(url)
    assert versions(url) == ["9999"]


def test_new_revision_rebuilding_a_referenced_table_keeps_rows_and_foreign_keys(
    url: str, tmp_path: Path
) -> None:
    """A later revision that rebuilds `alerts` (a table copy on SQLite) while decisions point at it."""
    Database(url).dispose()
    insert_alert_with_decision(url)
    where = copy_script_location(tmp_path)
    add_revision(
        where,
        "9001",
        """\
        with op.batch_alter_table("alerts") as b:
            b.add_column(sa.Column("reviewed_ts", sa.Float(), nullable=True))
            b.alter_column("context", existing_type=sa.Text(), nullable=True)
        op.execute("UPDATE alerts SET reviewed_ts = created_ts + 60")
    """,
    )
    engine = create_engine(url)
    try:
        assert ensure_schema(engine, script_location=where) == "upgraded"
        assert ensure_schema(engine, script_location=where) == "current"
        with engine.connect() as conn:
            assert (
                conn.execute(text("SELECT reviewed_ts FROM alerts WHERE id = 'a1'")).scalar() == 1764000061.25
            )
            assert conn.execute(text("SELECT count(*) FROM decisions WHERE alert_id = 'a1'")).scalar() == 1
            if engine.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
    finally:
        engine.dispose()
    assert versions(url) == ["9001"]


def test_failed_revision_leaves_the_database_at_its_previous_revision(url: str, tmp_path: Path) -> None:
    Database(url).dispose()
    insert_alert_with_decision(url)
    where = copy_script_location(tmp_path)
    add_revision(
        where,
        "9001",
        """\
        op.create_table("half_done", sa.Column("id", sa.Integer(), primary_key=True))
        with op.batch_alter_table("alerts") as b:
            b.add_column(sa.Column("oops", sa.Float(), nullable=True))
        op.execute("INSERT INTO half_done (id) VALUES (1)")
        raise RuntimeError("revision 9001 failed halfway")
    """,
    )
    engine = create_engine(url)
    try:
        with pytest.raises(RuntimeError, match="failed halfway"):
            ensure_schema(engine, script_location=where)
        with engine.connect() as conn:
            insp = inspect(conn)
            assert not insp.has_table("half_done")
            assert "oops" not in {c["name"] for c in insp.get_columns("alerts")}
            assert conn.execute(text("SELECT count(*) FROM decisions")).scalar() == 1
    finally:
        engine.dispose()
    assert versions(url) == [alembic_head()]
    db = Database(url)  # the shipped migrations still open it
    with db.session() as s:
        assert s.get(AlertRow, "a1") is not None
    db.dispose()


def test_sqlite_connections_enforce_foreign_keys_after_a_migration(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'lw.db'}")
    try:
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        db.dispose()


# ---------------------------------------------------------------------------------------------------
# Concurrency and the start-up path

_OPENER = r"""
import json, logging, sys, time
from pathlib import Path
url, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
from store.db import Database
messages = []
class Keep(logging.Handler):
    def emit(self, record):
        messages.append(record.getMessage())
log = logging.getLogger("store.migrations")
log.setLevel(logging.INFO)
log.addHandler(Keep())
ready.touch()
while not go.exists():
    time.sleep(0.002)
Database(url).dispose()
print(json.dumps(messages))
"""


def test_processes_opening_a_new_database_at_once_migrate_it_exactly_once(url: str, tmp_path: Path) -> None:
    n = 4
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPENER, url, str(tmp_path / f"ready{i}"), str(go)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready{i}").exists() for i in range(n)):
            assert time.monotonic() < deadline, "openers did not start"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.01)
        go.touch()
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0] * n, [err for _, err in results]
    messages = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    migrators = [m for m in messages if any("upgrading" in line for line in m)]
    assert len(migrators) == 1, messages
    assert versions(url) == [alembic_head()]
    assert schema_diffs(url) == []


_FAST_OPEN = r"""
import sys, time
t = time.perf_counter()
from store.db import Database
Database(sys.argv[1]).dispose()
print("alembic" in sys.modules, round(time.perf_counter() - t, 3))
"""


def test_opening_an_up_to_date_database_takes_no_lock_and_skips_alembic(url: str) -> None:
    """Start-up stays cheap, and a reader can start while a writer holds the write (or migration) lock."""
    Database(url).dispose()
    engine = create_engine(url)
    try:
        with engine.connect() as holder:
            if engine.dialect.name == "sqlite":
                holder.connection.driver_connection.isolation_level = None  # type: ignore[union-attr]
                holder.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
            holder.execute(text("INSERT INTO streams (id, url, name, created_ts) VALUES ('s', '', '', 0)"))
            done = subprocess.run(
                [sys.executable, "-c", _FAST_OPEN, url], cwd=ROOT, capture_output=True, text=True, timeout=25
            )
            holder.rollback()
            if engine.dialect.name == "postgresql":
                holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
    finally:
        engine.dispose()
    assert done.returncode == 0, done.stderr
    imported, _seconds = done.stdout.split()
    assert imported == "False"


# ---------------------------------------------------------------------------------------------------
# Developer CLI


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "store.migrations", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_check_passes_on_the_shipped_migrations() -> None:
    done = cli("check")
    assert done.returncode == 0, done.stderr
    assert "models match the migrations at head" in done.stdout


def test_cli_revision_writes_the_next_numbered_revision_on_top_of_head(tmp_path: Path) -> None:
    where = copy_script_location(tmp_path)
    before = alembic_head(where)
    done = cli("--script-location", str(where), "revision", "-m", "add a column")
    assert done.returncode == 0, done.stderr
    new = f"{int(before) + 1:04d}"
    path = where / "versions" / f"{new}_add_a_column.py"
    assert path.exists(), done.stdout
    assert read_revisions(where)[new].down_revisions == (before,)
    assert alembic_head(where) == new
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", str(path)], capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout
    engine = create_engine(f"sqlite:///{tmp_path / 'lw.db'}")
    try:
        assert ensure_schema(engine, script_location=where) == "upgraded"
    finally:
        engine.dispose()
    assert versions(f"sqlite:///{tmp_path / 'lw.db'}") == [new]


def test_cli_prints_the_upgrade_sql_for_a_postgresql_dba() -> None:
    done = cli("upgrade", "--sql", "--url", "postgresql+psycopg://someone@db.invalid/livewatch")
    assert done.returncode == 0, done.stderr
    assert "CREATE TABLE alerts" in done.stdout
    assert "payload JSON NOT NULL" in done.stdout
    assert f"INSERT INTO alembic_version (version_num) VALUES ('{BASELINE}')" in done.stdout
