"""A year of alerts: the review API's queue, statistics, alert page and exports at 10^4..10^6 alerts.

Builds each store by SQL from a real scanned store (its alerts and detections copied with new ids
over 365 days and ~200 streams, 60 % with a decision, some with notes), on SQLite and/or PostgreSQL,
then times the review API in-process (FastAPI TestClient, bearer token) and the exports in child
processes (so each one's peak RSS is its own), and prints p50/p95 and peak RSS per size and database.

    .venv/bin/python bench/bench_store_scale.py --source /path/to/data/livewatch.db \\
        --sizes 10000,100000,1000000 --db sqlite,postgresql --pg-url postgresql+psycopg://...

Without --source the bundled demo broadcast is scanned first (`livewatch scan --no-video`). The
bulk load runs with store.scale's triggers off and then rebuilds everything derived in one pass (as
the 0005 migration does for an existing store); the timed part sees exactly what a migrated store has.
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


def build(url: str, n: int, source: Path, data_dir: Path) -> float:
    """Fill an empty store at `url` with `n` alerts; returns seconds taken."""
    from store import scale
    from store.db import Database

    t0 = time.perf_counter()
    db = Database(url, data_dir)
    dialect = db.engine.dialect.name
    alerts, dets = _templates(source)
    t = len(alerts)
    with db.engine.begin() as conn:

        def ex(sql: str) -> None:
            conn.execute(text(sql))

        scale.drop_triggers(ex, dialect)
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
            src = f"generate_series(0, {n - 1}) AS seq(i)"
            pad = "lpad(({x})::text, 8, '0')"
            js = "({x})::json"
            st_ = "({x})::text"
        day = f"(i % {DAYS})"
        stream = f"((i / {DAYS} + i) % {STREAMS})"
        # broadcasts: one per stream and day (only those used), started at 20:00 local that day
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
        ex(
            f"{seq}INSERT INTO alerts (id, broadcast_id, stream_id, {', '.join(_ALERT_COLS)}, start_ts, created_ts,"
            " moment_ts, time_ts, status)"
            f" SELECT 'a' || {pad.format(x='i')}, 'b' || {st_.format(x=stream)} || '-' || {st_.format(x=day)},"
            f" 'room-' || {st_.format(x=stream)}, "
            + ", ".join(f"tmpl.{c}" if c != "payload" else js.format(x="tmpl.payload") for c in _ALERT_COLS)
            + f", {start}, {start} + 30, {start}, {start}, 'unreviewed'"
            f" FROM {src} JOIN tmpl ON tmpl.k = i % {t}"
        )
        if dets:
            ex(
                f"{seq}INSERT INTO detections (alert_id, broadcast_id, {', '.join(_DET_COLS)})"
                f" SELECT 'a' || {pad.format(x='i')}, 'b' || {st_.format(x=stream)} || '-' || {st_.format(x=day)}, "
                + ", ".join(
                    f"dtmpl.{c}" if c != "details" else js.format(x="dtmpl.details") for c in _DET_COLS
                )
                + f" FROM {src} JOIN tmpl ON tmpl.k = i % {t} JOIN dtmpl ON dtmpl.tid = tmpl.tid"
            )
        # 60 % decided: confirmed / false_positive / escalated in turn; every 10th decision with a note
        kinds = "CASE i % 3 WHEN 0 THEN 'confirmed' WHEN 1 THEN 'false_positive' ELSE 'escalated' END"
        note = "CASE WHEN i % 10 = 0 THEN '已核实 checked' ELSE '' END"
        ex(
            f"{seq}INSERT INTO decisions (alert_id, decision, note, reviewer, created_ts)"
            f" SELECT 'a' || {pad.format(x='i')}, {kinds}, {note}, 'ann', {start} + 86400"
            f" FROM {src} JOIN tmpl ON tmpl.k = i % {t} WHERE i % 5 < 3"
        )
        scale.install(ex, dialect, rebuild_data=True)
        ex("DROP TABLE tmpl")
        ex("DROP TABLE dtmpl")
    if dialect == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM ANALYZE"))
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
    k = iter(range(10**9))
    out["alert page"] = _timed(lambda: get(f"/api/alerts/{ids[next(k) % len(ids)]}"), repeat)
    db.dispose()
    return out


def export_child(url: str, data_dir: str, kind: str, since: str, until: str) -> None:
    """Run one export in this (child) process; print rows, seconds, peak RSS as JSON."""
    from fastapi.testclient import TestClient

    from review.app import create_app
    from review.config import ReviewConfig
    from store.db import Database

    db = Database(url, Path(data_dir))
    c = TestClient(create_app(db, Path(data_dir), ReviewConfig(), env_token=TOKEN))
    t0 = time.perf_counter()
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
    print(json.dumps({"rows": max(0, lines - 1), "bytes": size, "s": secs, "rss_mb": _peak_rss_mb()}))


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
        "try:\n    app(['alerts', '--jsonl', '--data-dir', sys.argv[1]])\nexcept SystemExit:\n    pass\n"
        "print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,"
        " file=sys.stderr)"
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
    secs, rss = done.stderr.strip().splitlines()[-1].split()
    return {"s": float(secs), "rss_mb": float(rss)}


# -- main -------------------------------------------------------------------------------------------


def _pg_database(base: str) -> tuple[str, Callable[[], None]]:
    schema = f"lw_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = (
        make_url(base)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()

    return url, drop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", help="a scanned store's livewatch.db (default: scan the demo broadcast)")
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--db", default="sqlite,postgresql")
    ap.add_argument("--pg-url", default=os.environ.get("LIVEWATCH_TEST_PG_URL", ""))
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--work", help="folder for the SQLite stores (default: a temporary one)")
    ap.add_argument("--no-exports", action="store_true")
    ap.add_argument("--export-child")
    ap.add_argument("--url")
    ap.add_argument("--data-dir")
    ap.add_argument("--since")
    ap.add_argument("--until")
    args = ap.parse_args()
    if args.export_child:
        export_child(args.url, args.data_dir, args.export_child, args.since, args.until)
        return
    import logging

    logging.basicConfig(level=logging.WARNING)
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
            shutil.rmtree(data_dir, ignore_errors=True)
            data_dir.mkdir(parents=True)
            drop: Callable[[], None] = lambda: None  # noqa: E731
            if dbn == "sqlite":
                url = f"sqlite:///{data_dir / 'livewatch.db'}"
            else:
                if not args.pg_url:
                    print("postgresql: no --pg-url / LIVEWATCH_TEST_PG_URL; skipped", file=sys.stderr)
                    break
                url, drop = _pg_database(args.pg_url)
            try:
                secs = build(url, n, source, data_dir)
                row(dbn, n, "build (by SQL)", f"{secs:.1f} s")
                for what, xs in measure_api(url, data_dir, args.repeat).items():
                    row(
                        dbn,
                        n,
                        what,
                        f"p50 {_pct(xs, 0.5) * 1000:.1f} ms · p95 {_pct(xs, 0.95) * 1000:.1f} ms",
                    )
                if not args.no_exports:
                    month = run_export(url, data_dir, "csv", "2025-03-01", "2025-03-31", 0)
                    row(
                        dbn,
                        n,
                        "ledger CSV, a month",
                        f"{month['rows']:,} rows {month['s']:.2f} s · "
                        f"{month['rows'] / month['s']:,.0f} rows/s · peak RSS {month['rss_mb']:.0f} MB",
                    )
                    year = run_export(url, data_dir, "csv", "2025-01-01", "2025-12-31", 0)
                    row(
                        dbn,
                        n,
                        "ledger CSV, a year",
                        f"{year['rows']:,} rows {year['s']:.2f} s · "
                        f"{year['rows'] / year['s']:,.0f} rows/s · peak RSS {year['rss_mb']:.0f} MB",
                    )
                    x = run_export(url, data_dir, "xlsx", "2025-01-01", "2025-12-31", year["rows"])
                    row(
                        dbn,
                        n,
                        "ledger XLSX, a year",
                        f"{x['s']:.2f} s · {x['rows'] / x['s']:,.0f} rows/s · peak RSS {x['rss_mb']:.0f} MB",
                    )
                    j = run_jsonl(url, data_dir)
                    row(
                        dbn,
                        n,
                        "alerts --jsonl",
                        f"{j['s']:.2f} s · {n / j['s']:,.0f} rows/s · peak RSS {j['rss_mb']:.0f} MB",
                    )
            finally:
                drop()
    print("\n| database | alerts | measure | result |\n|---|---|---|---|")
    for dbn, n, what, value in table:
        print(f"| {dbn} | {n:,} | {what} | {value} |")


if __name__ == "__main__":
    main()
