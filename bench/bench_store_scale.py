"""A year of alerts: the review API's queue, statistics, alert page and exports at 10^4..10^6 alerts.

Builds each store by SQL from a real scanned store (its alerts and detections copied with new ids
over 365 days and ~200 streams, in time order as a monitor appends them, 60 % with a decision, every
tenth decision with a note), on SQLite and/or PostgreSQL, then times the review API (FastAPI
TestClient, bearer token) and each export in child processes of their own (so each peak RSS is its
own), and prints p50/p95, peak RSS, rows/s of wall-clock and of CPU time, and the load average around
each size (the figures of a shared machine mean little without it).

    .venv/bin/python bench/bench_store_scale.py --source /path/to/data/livewatch.db \
        --sizes 10000,100000,1000000 --db sqlite,postgresql --pg-url postgresql+psycopg://... \
        --work /tmp/lwbench --reuse      # keep the stores; a second run measures again without building

Without --source the bundled demo broadcast is scanned first (`livewatch scan --no-video`). The bulk
load runs with store.scale's triggers and the alerts' indexes off, writes the derived columns itself,
makes the indexes after, and rebuilds the counts and search index from the rows in one pass
(store.scale.rebuild_counts), so the timed part sees exactly what a migrated store has.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, make_url, text  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
YEAR_START = datetime(2025, 1, 1, tzinfo=TZ).timestamp()
STREAMS = 200
DAYS = 365
TOKEN = "bench-token-" + "x" * 20


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: ru_maxrss would carry the parent's peak across fork and exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- building ---------------------------------------------------------------------------------------


def _source_store(path: str | None, work: Path) -> Path:
    if path:
        return Path(path)
    data = work / "source-data"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "scan",
            "--no-video",
            "--data-dir",
            str(data),
            str(ROOT / "examples" / "corpus" / "broadcast_0.mp4"),
        ],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    return data / "livewatch.db"


_ALERT_COLS = (
    "category",
    "code",
    "rule_id",
    "severity",
    "source",
    "start_s",
    "end_s",
    "text",
    "context",
    "law",
    "rules_version",
    "evidence_dir",
    "evidence_status",
    "payload",
)
_DET_COLS = (
    "rule_id",
    "category",
    "code",
    "severity",
    "source",
    "start_s",
    "end_s",
    "matched",
    "text",
    "score",
    "mode",
    "details",
)


def _templates(source: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    import sqlite3

    con = sqlite3.connect(source)
    con.row_factory = sqlite3.Row
    alerts = [dict(r) for r in con.execute(f"SELECT id, {', '.join(_ALERT_COLS)} FROM alerts ORDER BY id")]
    dets = [dict(r) for r in con.execute(f"SELECT alert_id, {', '.join(_DET_COLS)} FROM detections")]
    con.close()
    if not alerts:
        raise SystemExit(f"{source} holds no alerts to copy")
    return alerts, dets


def build(url: str, n: int, source: Path, data_dir: Path, verbose: bool = False) -> float:
    """Fill an empty store at `url` with `n` alerts; returns seconds taken.

    The alerts go in in time order (as a monitor appends them), with their derived columns (moment,
    time, status, latest decision) written by the load itself; the queue's indexes are made after the
    load and the counts and search index rebuilt from the rows in one pass (store.scale.rebuild_counts)
    with the triggers off, so the timed part sees exactly what a migrated store has."""
    from store import scale
    from store.db import Database
    from store.models import AlertRow, Decision, DetectionRow

    t0 = time.perf_counter()
    db = Database(url, data_dir)
    dialect = db.engine.dialect.name
    alerts, dets = _templates(source)
    t = len(alerts)
    with db.engine.connect() as conn:

        def ex(sql: str) -> None:
            t1 = time.perf_counter()
            conn.execute(text(sql))
            if verbose:
                print(f"  {time.perf_counter() - t1:7.2f} s  {' '.join(sql.split())[:110]}", file=sys.stderr)

        if dialect == "sqlite":  # a bulk load: no rollback journal, a big page cache, no fsync
            for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-1000000", "temp_store=MEMORY"):
                conn.exec_driver_sql(f"PRAGMA {pragma}")
        else:
            ex("SET maintenance_work_mem = '1GB'")
            ex("SET synchronous_commit = off")
        scale.drop_triggers(ex, dialect)
        pg_search = dialect == "postgresql" and scale.pg_search_available(conn)
        if pg_search:
            ex(f"DROP INDEX {scale.PG_SEARCH_INDEX}")
        bulk_indexes = [
            ix
            for table in (AlertRow.__table__, DetectionRow.__table__, Decision.__table__)
            for ix in table.indexes  # type: ignore[attr-defined]
        ]
        for ix in bulk_indexes:
            ex(f"DROP INDEX {ix.name}")
        temp = "TEMP " if dialect == "sqlite" else "TEMPORARY "
        ex(
            f"CREATE {temp}TABLE tmpl (k INTEGER, tid TEXT, category TEXT, code TEXT, rule_id TEXT, severity TEXT,"
            " source TEXT, start_s FLOAT, end_s FLOAT, text TEXT, context TEXT, law TEXT, rules_version TEXT,"
            " evidence_dir TEXT, evidence_status TEXT, payload TEXT)"
        )
        conn.execute(
            text(
                "INSERT INTO tmpl VALUES (:k, :id, :category, :code, :rule_id, :severity, :source, :start_s,"
                " :end_s, :text, :context, :law, :rules_version, :evidence_dir, :evidence_status, :payload)"
            ),
            [
                {
                    **a,
                    "k": k,
                    "payload": a["payload"] if isinstance(a["payload"], str) else json.dumps(a["payload"]),
                }
                for k, a in enumerate(alerts)
            ],
        )
        ex(
            f"CREATE {temp}TABLE dtmpl (tid TEXT, rule_id TEXT, category TEXT, code TEXT, severity TEXT,"
            " source TEXT, start_s FLOAT, end_s FLOAT, matched TEXT, text TEXT, score FLOAT, mode TEXT,"
            " details TEXT)"
        )
        if dets:
            conn.execute(
                text(
                    "INSERT INTO dtmpl VALUES (:alert_id, :rule_id, :category, :code, :severity, :source,"
                    " :start_s, :end_s, :matched, :text, :score, :mode, :details)"
                ),
                [
                    {
                        **d,
                        "details": d["details"]
                        if isinstance(d["details"], str)
                        else json.dumps(d["details"]),
                    }
                    for d in dets
                ],
            )
        if dialect == "sqlite":
            seq = f"WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {n - 1}) "
            src = "seq"
            pad = "printf('%08d', {x})"
            js = "{x}"
            st_ = "CAST({x} AS TEXT)"
        else:
            seq = ""
            src = f"generate_series(0::bigint, {n - 1}::bigint) AS seq(i)"
            pad = "lpad(({x})::text, 8, '0')"
            js = "({x})::json"
            st_ = "({x})::text"
        day = f"(i * {DAYS} / {n})"  # in time order: alert i on day i·365/n (integer division)
        stream = f"((i + i / {STREAMS}) % {STREAMS})"
        # broadcasts: one per stream and day (only those used), started at 12:00 local that day
        ex(
            f"{seq}INSERT INTO streams (id, url, name, created_ts) SELECT DISTINCT 'room-' || {st_.format(x=stream)},"
            f" '', 'room', {YEAR_START} FROM {src}"
        )
        ex(
            f"{seq}INSERT INTO broadcasts (id, stream_id, kind, source, status, rules_version, meta, created_ts,"
            f" started_ts) SELECT 'b' || {st_.format(x='s')} || '-' || {st_.format(x='d')},"
            f" 'room-' || {st_.format(x='s')}, 'live', 'bench', 'ended', '', {js.format(x=repr('{}'))},"
            f" {YEAR_START}, {YEAR_START} + d * 86400 + 43200"
            f" FROM (SELECT DISTINCT {stream} AS s, {day} AS d FROM {src}) AS sd"
        )
        start = f"({YEAR_START} + {day} * 86400 + 43200 + ((i * 7919) % 36000) + tmpl.start_s * 0.001)"
        # 60 % decided: confirmed / false_positive / escalated in turn, one decision each (ids in alert
        # order, so the alert row can name its latest decision); every 10th decision with a note
        decided = "i % 5 < 3"
        kinds = "CASE i % 3 WHEN 0 THEN 'confirmed' WHEN 1 THEN 'false_positive' ELSE 'escalated' END"
        decision_id = "((i / 5) * 3 + i % 5 + 1)"
        ex(
            f"{seq}INSERT INTO alerts (id, broadcast_id, stream_id, {', '.join(_ALERT_COLS)}, start_ts, created_ts,"
            " moment_ts, time_ts, status, decision_id)"
            f" SELECT 'a' || {pad.format(x='i')}, 'b' || {st_.format(x=stream)} || '-' || {st_.format(x=day)},"
            f" 'room-' || {st_.format(x=stream)}, "
            + ", ".join(f"tmpl.{c}" if c != "payload" else js.format(x="tmpl.payload") for c in _ALERT_COLS)
            + f", {start}, {start} + 30, {start}, {start},"
            f" CASE WHEN {decided} THEN {kinds} ELSE 'unreviewed' END,"
            f" CASE WHEN {decided} THEN {decision_id} END"
            f" FROM {src} JOIN tmpl ON tmpl.k = i % {t} ORDER BY i"
        )
        if dets:
            ex(
                f"{seq}INSERT INTO detections (alert_id, broadcast_id, {', '.join(_DET_COLS)})"
                f" SELECT 'a' || {pad.format(x='i')}, 'b' || {st_.format(x=stream)} || '-' || {st_.format(x=day)}, "
                + ", ".join(
                    f"dtmpl.{c}" if c != "details" else js.format(x="dtmpl.details") for c in _DET_COLS
                )
                + f" FROM {src} JOIN tmpl ON tmpl.k = i % {t} JOIN dtmpl ON dtmpl.tid = tmpl.tid ORDER BY i"
            )
        note = "CASE WHEN i % 10 = 0 THEN '已核实 checked' ELSE '' END"
        ex(
            f"{seq}INSERT INTO decisions (id, alert_id, decision, note, reviewer, created_ts)"
            f" SELECT {decision_id}, 'a' || {pad.format(x='i')}, {kinds}, {note}, 'ann', {start} + 86400"
            f" FROM {src} JOIN tmpl ON tmpl.k = i % {t} WHERE {decided} ORDER BY i"
        )
        if dialect == "postgresql":
            ex("SELECT setval(pg_get_serial_sequence('decisions', 'id'), (SELECT max(id) FROM decisions))")
        for ix in bulk_indexes:
            t1 = time.perf_counter()
            ix.create(conn)
            if verbose:
                print(f"  {time.perf_counter() - t1:7.2f} s  CREATE INDEX {ix.name}", file=sys.stderr)
        if pg_search:
            scale.create_pg_search_index(conn)
        scale.rebuild_counts(ex, dialect)
        scale.install(ex, dialect, rebuild_data=False)
        ex("DROP TABLE tmpl")
        ex("DROP TABLE dtmpl")
        conn.commit()
        if dialect == "sqlite":
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    if dialect == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            # this store's tables only: a bare VACUUM visits every schema of the database (and waits
            # on other stores' open transactions)
            tables = ", ".join(
                t for t in ("streams", "broadcasts", "alerts", "detections", "decisions", *scale.COUNT_TABLES)
            )
            c.execute(text(f"VACUUM ANALYZE {tables}"))
    else:
        with db.engine.begin() as c:
            c.execute(text("ANALYZE"))
    db.dispose()
    return time.perf_counter() - t0


# -- measuring --------------------------------------------------------------------------------------


def _timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    out = []
    fn()  # warm (plans, caches): what a reviewer's second click sees
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p * (len(xs) - 1)))]


def measure_api(url: str, data_dir: Path, repeat: int) -> dict[str, list[float]]:
    from fastapi.testclient import TestClient

    from review.app import create_app
    from review.config import ReviewConfig
    from review.queries import encode_cursor
    from store.db import Database

    db = Database(url, data_dir)
    app = create_app(db, data_dir, ReviewConfig(), env_token=TOKEN)
    c = TestClient(app)
    h = {"Authorization": f"Bearer {TOKEN}"}

    def get(path: str, **params: Any) -> Any:
        r = c.get(path, params=params, headers=h)
        assert r.status_code == 200, (path, params, r.status_code, r.text[:300])
        return r

    with db.engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM alerts")).scalar() or 0
        category = conn.execute(
            text("SELECT category FROM alerts GROUP BY category ORDER BY count(*) DESC LIMIT 1")
        ).scalar()
        deep = conn.execute(
            text(
                "SELECT time_ts, start_s, id FROM alerts ORDER BY time_ts DESC, start_s DESC, id DESC"
                f" LIMIT 1 OFFSET {int(n * 0.9)}"
            )
        ).one()
        ids = list(
            conn.execute(
                text(
                    "SELECT id FROM alerts WHERE id IN ('a00000007', 'a00001234', 'a00004321',"
                    " 'a00009876', 'a00000042')"
                )
            ).scalars()
        )
    cursor = encode_cursor(float(deep[0]), float(deep[1]), str(deep[2]))
    out: dict[str, list[float]] = {}
    out["queue first page"] = _timed(lambda: get("/api/alerts", limit=100), repeat)
    out["queue by category"] = _timed(lambda: get("/api/alerts", limit=100, category=category), repeat)
    out["queue unreviewed"] = _timed(lambda: get("/api/alerts", limit=100, status="unreviewed"), repeat)
    out["queue by stream"] = _timed(lambda: get("/api/alerts", limit=100, stream="room-7"), repeat)
    out["queue page at 90 %"] = _timed(lambda: get("/api/alerts", limit=100, cursor=cursor), repeat)
    out["queue counts (limit 1)"] = _timed(lambda: get("/api/alerts", limit=1), repeat)
    out["search (3+ chars)"] = _timed(lambda: get("/api/alerts", limit=100, q="最好的"), max(3, repeat // 4))
    out["statistics, a year"] = _timed(
        lambda: get("/api/stats", since="2025-01-01", until="2025-12-31"), max(3, repeat // 4)
    )
    out["statistics, 10 months inside"] = _timed(
        lambda: get("/api/stats", since="2025-02-01", until="2025-11-30"), max(3, repeat // 4)
    )
    k = iter(range(10**9))
    out["alert page"] = _timed(lambda: get(f"/api/alerts/{ids[next(k) % len(ids)]}"), repeat)
    db.dispose()
    return out


def api_child(url: str, data_dir: str, repeat: int) -> None:
    """Time the review API in this (child) process; print the timings and peak RSS as JSON."""
    out = measure_api(url, Path(data_dir), repeat)
    print(json.dumps({"timings": out, "rss_mb": _peak_rss_mb()}))


def run_api(url: str, data_dir: Path, repeat: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, __file__, "--api-child", "--url", url, "--data-dir", str(data_dir),
         "--repeat", str(repeat)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    res: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return res


def export_child(url: str, data_dir: str, kind: str, since: str, until: str) -> None:
    """Run one export in this (child) process; print rows, seconds, peak RSS as JSON."""
    from fastapi.testclient import TestClient

    from review.app import create_app
    from review.config import ReviewConfig
    from store.db import Database

    db = Database(url, Path(data_dir))
    c = TestClient(create_app(db, Path(data_dir), ReviewConfig(), env_token=TOKEN))
    t0 = time.perf_counter()
    c0 = time.process_time()
    size = 0
    lines = 0
    with c.stream(
        "GET",
        f"/api/ledger.{kind}",
        params={"since": since, "until": until},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as r:
        assert r.status_code == 200, r.status_code
        for chunk in r.iter_bytes():
            size += len(chunk)
            lines += chunk.count(b"\n")
    secs = time.perf_counter() - t0
    cpu = time.process_time() - c0
    print(json.dumps({"rows": max(0, lines - 1), "bytes": size, "s": secs, "cpu_s": cpu, "rss_mb": _peak_rss_mb()}))


def run_export(url: str, data_dir: Path, kind: str, since: str, until: str, rows: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--export-child",
            kind,
            "--url",
            url,
            "--data-dir",
            str(data_dir),
            "--since",
            since,
            "--until",
            until,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    res = json.loads(done.stdout.strip().splitlines()[-1])
    if kind == "xlsx":
        res["rows"] = rows
    return res


def run_jsonl(url: str, data_dir: Path) -> dict[str, Any]:
    env = {**os.environ, "LIVEWATCH_DB_URL": url, "PYTHONPATH": str(ROOT)}
    code = (
        "import resource, sys, time\nfrom app.cli import app\nt0 = time.perf_counter()\n"
        "c0 = time.process_time()\n"
        "try:\n    app(['alerts', '--jsonl', '--data-dir', sys.argv[1]])\nexcept SystemExit:\n    pass\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')]\n"
        "rss = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(time.perf_counter() - t0, rss, time.process_time() - c0, file=sys.stderr)"
    )
    with open(os.devnull, "wb") as null:
        done = subprocess.run(
            [sys.executable, "-c", code, str(data_dir)],
            stdout=null,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    secs, rss, cpu = done.stderr.strip().splitlines()[-1].split()
    return {"s": float(secs), "rss_mb": float(rss), "cpu_s": float(cpu)}


# -- main -------------------------------------------------------------------------------------------


def _pg_database(base: str, schema: str | None = None) -> tuple[str, Callable[[], None]]:
    """A schema of its own for one store (random and dropped after, or `schema`, kept for --reuse)."""
    keep = schema is not None
    schema = schema or f"lw_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
    url = (
        make_url(base)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )

    def drop() -> None:
        if not keep:
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()

    return url, drop


def _drop_pg_schema(base: str, schema: str) -> None:
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    admin.dispose()


def _rate(r: dict[str, Any]) -> str:
    """Rows, seconds, rows/s of wall-clock time and of the process's own CPU time (on a shared machine
    the first is what others' work leaves over), peak RSS."""
    return (
        f"{r['rows']:,} rows {r['s']:.2f} s · {r['rows'] / r['s']:,.0f} rows/s · "
        f"{r['rows'] / max(r['cpu_s'], 1e-9):,.0f} rows/CPU-s · peak RSS {r['rss_mb']:.0f} MB"
    )


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--source", help="a scanned store's livewatch.db (default: scan the demo broadcast)")
    ap.add_argument("--sizes", default="10000,100000", help="alerts per store, comma-separated")
    ap.add_argument("--db", default="sqlite,postgresql", help="sqlite, postgresql or both")
    ap.add_argument("--pg-url", default=os.environ.get("LIVEWATCH_TEST_PG_URL", ""),
                    help="PostgreSQL to build in (a schema per store); default $LIVEWATCH_TEST_PG_URL")
    ap.add_argument("--repeat", type=int, default=20, help="timed calls per API measure")
    ap.add_argument("--work", help="folder for the SQLite stores (default: a temporary one)")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the stores (in --work, PostgreSQL schemas lw_bench_<n>) and reuse those "
                    "already built by an earlier --reuse run instead of building again")
    ap.add_argument("--build-only", action="store_true", help="build (or find) the stores, measure nothing")
    ap.add_argument("--no-exports", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="time each statement of the build")
    ap.add_argument("--export-child", help=argparse.SUPPRESS)
    ap.add_argument("--api-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", help=argparse.SUPPRESS)
    ap.add_argument("--since", help=argparse.SUPPRESS)
    ap.add_argument("--until", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.export_child:
        export_child(args.url, args.data_dir, args.export_child, args.since, args.until)
        return
    if args.api_child:
        api_child(args.url, args.data_dir, args.repeat)
        return
    import logging

    logging.basicConfig(level=logging.WARNING)
    if args.reuse and not args.work:
        raise SystemExit("--reuse needs --work")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="lw-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    source = _source_store(args.source, work)
    table: list[tuple[str, int, str, str]] = []

    def row(dbn: str, n: int, what: str, value: str) -> None:
        table.append((dbn, n, what, value))
        print(f"{dbn:10} {n:>9,}  {what:28} {value}", flush=True)

    for dbn in args.db.split(","):
        for n in (int(x) for x in args.sizes.split(",")):
            data_dir = work / f"{dbn}-{n}"
            marker = data_dir / "bench-built"
            reused = args.reuse and marker.exists()
            if not reused:
                shutil.rmtree(data_dir, ignore_errors=True)
                data_dir.mkdir(parents=True)
            drop: Callable[[], None] = lambda: None  # noqa: E731
            if dbn == "sqlite":
                url = f"sqlite:///{data_dir / 'livewatch.db'}"
            else:
                if not args.pg_url:
                    print("postgresql: no --pg-url / LIVEWATCH_TEST_PG_URL; skipped", file=sys.stderr)
                    break
                schema = f"lw_bench_{n}" if args.reuse else None
                if schema and not reused:
                    _drop_pg_schema(args.pg_url, schema)
                url, drop = _pg_database(args.pg_url, schema)
            try:
                if reused:
                    row(dbn, n, "build (by SQL)", marker.read_text().strip() + " (reused)")
                else:
                    secs = build(url, n, source, data_dir, verbose=args.verbose)
                    marker.write_text(f"{secs:.1f} s, load {_load()}\n")
                    row(dbn, n, "build (by SQL)", f"{secs:.1f} s")
                if args.build_only:
                    continue
                row(dbn, n, "load average before", _load())
                api = run_api(url, data_dir, args.repeat)
                for what, xs in api["timings"].items():
                    row(
                        dbn,
                        n,
                        what,
                        f"p50 {_pct(xs, 0.5) * 1000:.1f} ms · p95 {_pct(xs, 0.95) * 1000:.1f} ms",
                    )
                row(dbn, n, "review API peak RSS", f"{api['rss_mb']:.0f} MB")
                if not args.no_exports:
                    month = run_export(url, data_dir, "csv", "2025-03-01", "2025-03-31", 0)
                    row(
                        dbn,
                        n,
                        "ledger CSV, a month",
                        _rate(month),
                    )
                    year = run_export(url, data_dir, "csv", "2025-01-01", "2025-12-31", 0)
                    row(
                        dbn,
                        n,
                        "ledger CSV, a year",
                        _rate(year),
                    )
                    x = run_export(url, data_dir, "xlsx", "2025-01-01", "2025-12-31", year["rows"])
                    row(
                        dbn,
                        n,
                        "ledger XLSX, a year",
                        _rate(x),
                    )
                    j = run_jsonl(url, data_dir)
                    row(
                        dbn,
                        n,
                        "alerts --jsonl",
                        _rate({**j, "rows": n}),
                    )
                row(dbn, n, "load average after", _load())
            finally:
                drop()
    print("\n| database | alerts | measure | result |\n|---|---|---|---|")
    for dbn, n, what, value in table:
        print(f"| {dbn} | {n:,} | {what} | {value} |")


if __name__ == "__main__":
    main()
