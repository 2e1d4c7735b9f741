"""store.scale and the queries on it: derived columns and maintained counts stay equal to counting the
rows (inserts, decisions, a refined broadcast start), keyset pages cover the queue exactly once, text
search goes through the index, statistics from counts equal statistics from rows, the ledger streams.
SQLite always; PostgreSQL where available (store_backends).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text
from store_backends import BACKENDS, backend_url

from review.decisions import add_decision
from review.ledger import iter_ledger_csv
from review.queries import AlertFilter, _add_rows, iter_ledger_rows, queue, statistics
from store import scale
from store.db import Database
from store.models import AlertFacetCount, AlertHourlyCount, AlertRow, Broadcast

DAY = 86400.0
T0 = 1_740_000_000.0  # 2025-02-19


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Database]:  # type: ignore[no-untyped-def]
    with backend_url(request.param, tmp_path) as url:
        d = Database(url)
        try:
            yield d
        finally:
            d.dispose()


def _fill(d: Database, n: int = 60) -> None:
    with d.session() as s:
        s.add(
            Broadcast(id="b-live", stream_id="room-a", kind="live", source="x", created_ts=T0, started_ts=T0)
        )
        s.add(Broadcast(id="b-file", stream_id=None, kind="file", source="y", created_ts=T0, started_ts=None))
        s.flush()
        for i in range(n):
            live = i % 3 != 0
            s.add(
                AlertRow(
                    id=f"a{i:04d}",
                    broadcast_id="b-live" if live else "b-file",
                    stream_id=("room-a" if i % 2 else "room-b") if live else None,
                    category=("false_claim", "price_fraud", "vulgar")[i % 3],
                    code="A1",
                    rule_id=f"r{i % 4}",
                    severity=("high", "low")[i % 2],
                    source="speech",
                    start_s=float(i * 3000),
                    end_s=float(i * 3000 + 2),
                    start_ts=T0 + i * 5000 if i % 5 == 0 and live else None,
                    text=f"第{i}句 最好的产品 {i}",
                    context="",
                    law="",
                    rules_version="v",
                    payload={"evidence": {"manifest_sha256": f"m{i}"}},
                    created_ts=T0 + 100 * DAY + i,
                )
            )
        s.commit()
    with d.session() as s:
        for i in range(0, n, 2):
            add_decision(s, f"a{i:04d}", ("confirmed", "false_positive", "escalated")[i % 3], reviewer="ann")
        add_decision(s, "a0002", "note", reviewer="bob", note="看过")
        add_decision(s, "a0004", "confirmed", reviewer="bob")  # a changed mind: the latest counts


def _row_truth(d: Database) -> list[tuple[str, str | None, str, str, str, str, str, float]]:
    with d.session() as s:
        latest = {}
        for aid, dec in s.execute(
            text("SELECT alert_id, decision FROM decisions WHERE decision <> 'note' ORDER BY id")
        ):
            latest[aid] = dec
        out = []
        for a, started in s.execute(select(AlertRow, Broadcast.started_ts).join(Broadcast)):
            moment = (
                a.start_ts
                if a.start_ts is not None
                else (started + a.start_s if started is not None else None)
            )
            out.append(
                (
                    a.id,
                    a.stream_id,
                    a.category,
                    a.rule_id,
                    a.severity,
                    a.source,
                    latest.get(a.id, "unreviewed"),
                    moment if moment is not None else a.created_ts,
                )
            )
        return out


def _check_counts(d: Database) -> None:
    truth = _row_truth(d)
    with d.session() as s:
        got = {r.id: (r.status, r.time_ts) for r in s.scalars(select(AlertRow))}
        assert set(got) == {t[0] for t in truth}
        for t in truth:
            assert got[t[0]][0] == t[6] and got[t[0]][1] == pytest.approx(t[7])
        facets: Counter[tuple[str, ...]] = Counter()
        for st, cat, rule, sev, src, status, n in s.execute(
            select(
                AlertFacetCount.stream_id,
                AlertFacetCount.category,
                AlertFacetCount.rule_id,
                AlertFacetCount.severity,
                AlertFacetCount.source,
                AlertFacetCount.status,
                AlertFacetCount.n,
            )
        ):
            if n:
                facets[(st, cat, rule, sev, src, status)] += n
        want = Counter((t[1] or "", t[2], t[3], t[4], t[5], t[6]) for t in truth)
        assert facets == want
        hourly = {
            (int(h), st): n
            for h, st, n in s.execute(
                select(AlertHourlyCount.hour_ts, AlertHourlyCount.status, AlertHourlyCount.n)
            )
            if n
        }
        assert hourly == Counter((int(t[7] // 3600) * 3600, t[6]) for t in truth)
        daily = {
            (int(dd), dim, k, st): n
            for dd, dim, k, st, n in s.execute(text("SELECT day_ts, dim, key, status, n FROM alert_daily"))
            if n
        }
        want_daily: Counter[tuple[int, str, str, str]] = Counter()
        for t in truth:
            day = int(t[7] // DAY) * int(DAY)
            for dim, key in (("stream", t[1] or ""), ("category", t[2]), ("rule", t[3])):
                want_daily[(day, dim, key, t[6])] += 1
        assert daily == want_daily
        monthly = {
            (int(m), dim, k, st): n
            for m, dim, k, st, n in s.execute(text("SELECT month_ts, dim, key, status, n FROM alert_monthly"))
            if n
        }
        want_monthly: Counter[tuple[int, str, str, str]] = Counter()
        for (day, dim, key, st), n in want_daily.items():
            utc = datetime.fromtimestamp(day, UTC)
            want_monthly[(int(datetime(utc.year, utc.month, 1, tzinfo=UTC).timestamp()), dim, key, st)] += n
        assert monthly == want_monthly


def test_counts_and_derived_columns_follow_inserts_decisions_and_a_refined_start(db: Database) -> None:
    _fill(db)
    _check_counts(db)
    with db.session() as s:
        s.get(Broadcast, "b-file").started_ts = T0 + 3 * DAY  # type: ignore[union-attr]
        s.commit()
    _check_counts(db)
    with db.session() as s:
        a = s.get(AlertRow, "a0003")
        assert a is not None and a.moment_ts == pytest.approx(T0 + 3 * DAY + a.start_s)


def test_rebuild_gives_the_same_counts_as_the_triggers(db: Database) -> None:
    _fill(db)
    with db.engine.begin() as conn:
        scale.install(lambda q: conn.execute(text(q)), conn.dialect.name, rebuild_data=True)
    _check_counts(db)


def test_keyset_pages_cover_the_queue_once_in_order(db: Database) -> None:
    _fill(db)
    with db.session() as s:
        for f in (
            AlertFilter(),
            AlertFilter(status="unreviewed"),
            AlertFilter(stream="(none)"),
            AlertFilter(category="price_fraud", since_ts=T0),
        ):
            whole = queue(s, f, limit=1000)
            seen, cursor = [], None
            while True:
                page = queue(s, f, limit=7, cursor=cursor, with_counts=cursor is None)
                seen += [a["alert_id"] for a in page.items]
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert seen == [a["alert_id"] for a in whole.items]
            assert whole.counts is not None
            assert (
                whole.total == len(seen) == sum(whole.counts["status"].values()) if f.status is None else True
            )
            keys = [(a["time_ts"], a["start_s"], a["alert_id"]) for a in whole.items]
            assert keys == sorted(keys, reverse=True)


def test_facet_counts_from_the_counts_equal_counts_from_the_rows(db: Database) -> None:
    _fill(db)
    with db.session() as s:
        for f in (
            AlertFilter(),
            AlertFilter(category="vulgar"),
            AlertFilter(status="confirmed", stream="room-a"),
        ):
            fast = queue(s, f, limit=1)
            slow = queue(
                s, f.__class__(**{**{k: getattr(f, k) for k in f.__slots__}, "since_ts": 0.0}), limit=1
            )
            assert fast.total == slow.total and fast.counts == slow.counts


def test_search_uses_the_index_and_finds_substrings(db: Database) -> None:
    _fill(db)
    with db.session() as s:
        hits = queue(s, AlertFilter(text="最好的产品 7"), limit=100)
        assert {a["alert_id"] for a in hits.items} == {"a0007"}
        assert queue(s, AlertFilter(text="a0012"), limit=100).total == 1  # the id is searched too
        assert queue(s, AlertFilter(text="第1"), limit=100).total == 11  # 2 characters: no index, still right
        if db.engine.dialect.name == "sqlite":
            plan = " ".join(
                str(r)
                for r in s.execute(
                    text(
                        "EXPLAIN QUERY PLAN SELECT id FROM alerts WHERE rowid IN "
                        "(SELECT rowid FROM alerts_fts WHERE alerts_fts MATCH '\"最好的\"')"
                    )
                )
            )
            assert "VIRTUAL TABLE INDEX" in plan


def test_statistics_from_counts_equal_statistics_from_rows(db: Database) -> None:
    _fill(db)
    with db.session() as s:
        for since, until in (
            (None, None),
            (T0 + 0.3 * DAY, T0 + 4.7 * DAY),
            (T0 + 1000.5, None),
            (None, T0 + 2 * DAY + 77),
        ):
            f = AlertFilter(since_ts=since, until_ts=until)
            fast = statistics(s, f, "Asia/Shanghai").as_dict()
            from collections import defaultdict

            by: dict[str, dict[str, Counter[str]]] = {
                k: defaultdict(Counter) for k in ("day", "category", "stream", "rule")
            }
            totals: Counter[str] = Counter()
            _add_rows(
                s,
                f,
                __import__("zoneinfo").ZoneInfo("Asia/Shanghai"),
                by,
                totals,
                ("day", "category", "stream", "rule"),
                since,
                until,
            )
            assert fast["totals"]["alerts"] == totals["alerts"]
            assert {d["day"]: d["alerts"] for d in fast["per_day"] if d["alerts"]} == {
                k: c["alerts"] for k, c in by["day"].items()
            }
            for dim in ("category", "stream", "rule"):
                assert {d[dim]: (d["alerts"], d["confirmed"]) for d in fast[f"per_{dim}"]} == {
                    k: (c["alerts"], c["confirmed"]) for k, c in by[dim].items()
                }


def _fill_long(d: Database, n: int = 160) -> None:
    """Alerts every ~2.9 days over ~15 months (2024-12 .. 2026-02), at varied hours, some decided."""
    start = datetime(2024, 12, 20, 3, 0, tzinfo=UTC).timestamp()
    with d.session() as s:
        s.add(Broadcast(id="b", stream_id="room-a", kind="live", source="x", created_ts=start, started_ts=start))
        s.flush()
        for i in range(n):
            s.add(
                AlertRow(
                    id=f"L{i:04d}",
                    broadcast_id="b",
                    stream_id=("room-a", "room-b", None)[i % 3],
                    category=("false_claim", "price_fraud", "vulgar")[i % 3 if i % 7 else 0],
                    code="A1",
                    rule_id=f"r{i % 5}",
                    severity="high",
                    source="speech",
                    start_s=float(i),
                    end_s=float(i + 1),
                    start_ts=start + i * 2.9 * DAY + (i % 11) * 3700.0,
                    text=f"第{i}句",
                    context="",
                    law="",
                    rules_version="v",
                    payload={},
                    created_ts=start,
                )
            )
        s.commit()
    with d.session() as s:
        for i in range(0, n, 3):
            add_decision(s, f"L{i:04d}", ("confirmed", "false_positive", "escalated")[i % 3], reviewer="ann")


def test_statistics_compose_months_and_days_equal_a_brute_force_count(db: Database) -> None:
    _fill_long(db)
    _check_counts(db)  # alert_monthly too
    tz = ZoneInfo("Asia/Shanghai")

    def local(year: int, month: int, day: int, hour: int = 0) -> float:
        return datetime(year, month, day, hour, tzinfo=tz).timestamp()

    with db.session() as s:
        rows = [
            (float(a.time_ts or 0), a.category, a.stream_id or "(none)", a.rule_id, a.status)
            for a in s.scalars(select(AlertRow))
        ]
        for since, until in (
            (local(2025, 1, 1), local(2026, 1, 1)),  # a year inside a longer store
            (local(2025, 3, 1), local(2025, 4, 1)),  # a month (local, so UTC days at both edges)
            (datetime(2025, 3, 1, tzinfo=UTC).timestamp(), datetime(2025, 6, 1, tzinfo=UTC).timestamp()),
            (local(2025, 2, 14), local(2025, 11, 3)),  # partial months at both ends
            (local(2025, 5, 3, 7), local(2025, 5, 20, 13)),  # inside one month, partial hours
            (None, local(2025, 8, 9)),
            (local(2025, 4, 17), None),
            (local(2025, 1, 30), local(2025, 2, 2)),  # across a month's end, no whole month
        ):
            f = AlertFilter(since_ts=since, until_ts=until)
            got = statistics(s, f, "Asia/Shanghai").as_dict()
            inside = [r for r in rows if (since is None or r[0] >= since) and (until is None or r[0] < until)]
            assert got["totals"]["alerts"] == len(inside), (since, until)
            assert got["totals"]["confirmed"] == sum(r[4] == "confirmed" for r in inside)
            days = Counter(datetime.fromtimestamp(r[0], tz).strftime("%Y-%m-%d") for r in inside)
            assert {d["day"]: d["alerts"] for d in got["per_day"] if d["alerts"]} == days
            for dim, i in (("category", 1), ("stream", 2), ("rule", 3)):
                want = {k: (len(v), sum(r[4] == "confirmed" for r in v), sum(r[4] == "unreviewed" for r in v))
                        for k in {r[i] for r in inside} for v in [[r for r in inside if r[i] == k]]}
                assert {d[dim]: (d["alerts"], d["confirmed"], d["unreviewed"]) for d in got[f"per_{dim}"]} == want, (
                    dim, since, until)
        # a decision moves an alert between statuses in every count table, the monthly one included
        add_decision(s, "L0001", "confirmed", reviewer="bob")
    _check_counts(db)


def test_ledger_streams_in_chunks_oldest_first_with_latest_decision_and_notes(db: Database) -> None:
    _fill(db)
    with db.session() as s:
        rows = list(iter_ledger_rows(s, AlertFilter(), "Asia/Shanghai", chunk=7))
        assert len(rows) == s.scalar(select(func.count()).select_from(AlertRow))
        assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
        by_id = {r.alert_id: r for r in rows}
        assert by_id["a0004"].status == "confirmed" and by_id["a0004"].reviewer == "bob"
        assert by_id["a0002"].note == "bob: 看过" and by_id["a0001"].status == "unreviewed"
        assert by_id["a0005"].manifest_sha256 == "m5"
        body = b"".join(iter_ledger_csv(iter(rows), every=5)).decode("utf-8-sig")
        assert body.count("\r\n") == len(rows) + 1


def test_an_alert_inserted_in_the_same_second_still_gets_its_time(db: Database) -> None:
    with db.session() as s:
        s.add(Broadcast(id="b", stream_id=None, kind="file", source="x", created_ts=T0, started_ts=None))
        s.flush()
        now = time.time()
        s.add(
            AlertRow(
                id="x",
                broadcast_id="b",
                category="c",
                code="c",
                rule_id="r",
                severity="low",
                source="speech",
                start_s=1.0,
                end_s=2.0,
                text="t",
                rules_version="v",
                created_ts=now,
            )
        )
        s.commit()
        a = s.get(AlertRow, "x")
        s.refresh(a)
        assert (
            a is not None
            and a.time_ts == pytest.approx(now)
            and a.moment_ts is None
            and a.status == "unreviewed"
        )


def test_payload_text_passed_through_equals_decoding_and_encoding_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    from pathlib import Path

    from store.paths import resolve_payload, resolve_payload_text

    ev = {"dir": "evidence/a1", "manifest": "evidence/a1/manifest.json", "manifest_sha256": "m"}
    payloads: list[dict[str, Any]] = [
        {"text": "最好的产品 第一", "evidence": ev, "n": 1.5, "x": None},
        {"text": "emoji 😀 and \u2028 and \x7f", "evidence": ev},  # a surrogate pair: decoded
        {"text": "tab\tnewline\n bell\x07 quote\" backslash\\ \\u4e00 literal", "evidence": ev},
        {"text": "no evidence yet"},
        {"text": "evidence null", "evidence": None},
        {"text": "other dir", "evidence": {"dir": "elsewhere/a1", "manifest_sha256": "m"}},
        {"text": "nested", "evidence": ev, "details": {"dir": "evidence/a1"}},
        {"text": "cites", "evidence": ev, "details": {"contradicts": [{"evidence_dir": "evidence/b2"}]}},
        {"text": "路径", "evidence": {**ev, "dir": "evidence/证据", "manifest": "evidence/证据/manifest.json"}},
    ]
    for data_dir in (Path("/data/直播"), tmp_path, None):
        for p in payloads:
            ev_dir = (p.get("evidence") or {}).get("dir", "evidence/a1") if p.get("evidence") is not None else None
            for evidence_dir in (ev_dir, None):
                raw = json.dumps(p)  # as SQLAlchemy stores a JSON column
                want = json.dumps(resolve_payload(json.loads(raw), evidence_dir, data_dir), ensure_ascii=False)
                assert resolve_payload_text(raw, evidence_dir, data_dir) == want, (p, evidence_dir, data_dir)


def test_alert_payload_lines_equal_the_decoded_payloads(db: Database) -> None:
    import json

    from store import repo

    _fill(db)
    with db.session() as s:
        s.get(AlertRow, "a0003").payload = {  # type: ignore[union-attr]
            "text": "证据 😀", "evidence": {"dir": "evidence/a0003", "manifest": "evidence/a0003/manifest.json"}
        }
        s.get(AlertRow, "a0003").evidence_dir = "evidence/a0003"  # type: ignore[union-attr]
        s.commit()
        old = [json.dumps(a, ensure_ascii=False) for a in repo.iter_alert_payloads(s, batch=7)]
        assert list(repo.iter_alert_payload_lines(s, batch=7)) == old
        assert list(repo.iter_alert_payload_lines(s, category="vulgar", limit=5)) == [
            json.dumps(a, ensure_ascii=False) for a in repo.iter_alert_payloads(s, category="vulgar", limit=5)
        ]
