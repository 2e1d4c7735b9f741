"""The review API against a real SQLite holding the corpus as the real scan pipeline stored it
(review_corpus.py): filters, decisions and their audit trail, range requests, login and CSRF, traversal."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from review_corpus import CorpusStore, shared_store
from sqlalchemy import select

from alerts.package import verify_package
from detectors.normalize import normalize
from review.app import COOKIE_NAME, CSRF_HEADER, create_app
from review.auth import hash_password, hash_token
from review.config import ApiToken, ReviewConfig, ReviewUser
from review.decisions import AuditTrailError, latest_decisions, rule_precision
from store.leases import take_lease, this_host
from store.live import LiveStore
from store.models import AlertRow, Broadcast, Decision, EvidenceFileRow, MonitorLease, Stream
from store.paths import resolve_stored

pytestmark = pytest.mark.model  # the shared store is scanned with the embedded Whisper model

PASSWORD = "correct horse battery"
TOKEN = "tok-for-the-ledger-robot"
ENV_TOKEN = "tok-from-the-environment"
TZ = ZoneInfo("Asia/Shanghai")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> CorpusStore:
    return shared_store(tmp_path_factory)


@pytest.fixture(scope="module")
def mono() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def app(store: CorpusStore, mono: FakeClock):  # type: ignore[no-untyped-def]
    cfg = ReviewConfig(
        users=[
            ReviewUser(username="ann", password_hash=hash_password(PASSWORD)),
            ReviewUser(username="bo", password_hash=hash_password(PASSWORD + "!")),
        ],
        api_tokens=[ApiToken(name="ledger-robot", sha256=hash_token(TOKEN))],
        login_max_failures=3,
        login_lockout_s=30.0,
    )
    return create_app(store.db, store.data_dir, cfg, tool_version="test", env_token=ENV_TOKEN, monotonic=mono)


def _login(app, user: str = "ann", password: str = PASSWORD) -> tuple[TestClient, str]:  # type: ignore[no-untyped-def]
    c = TestClient(app, base_url="http://127.0.0.1:8765")
    r = c.post("/api/login", json={"username": user, "password": password})
    assert r.status_code == 200, r.text
    return c, r.json()["csrf_token"]


@pytest.fixture(scope="module")
def client(app) -> tuple[TestClient, str]:  # type: ignore[no-untyped-def]
    return _login(app)


# -- authentication ---------------------------------------------------------------------------------

PROTECTED = [
    ("GET", "/api/alerts"),
    ("GET", "/api/alerts/{id}"),
    ("GET", "/api/alerts/{id}/files/clip.mp4"),
    ("GET", "/api/alerts/{id}/decisions"),
    ("POST", "/api/alerts/{id}/decisions"),
    ("GET", "/api/alerts/{id}/package"),
    ("GET", "/api/alerts/{id}/verify"),
    ("GET", "/api/stats"),
    ("GET", "/api/stats/chart.svg"),
    ("GET", "/api/precision"),
    ("GET", "/api/ledger.csv"),
    ("GET", "/api/ledger.xlsx"),
    ("GET", "/api/session"),
    ("POST", "/api/logout"),
    ("GET", "/metrics"),
    ("GET", "/api/streams"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_api_route_needs_a_login(app, store: CorpusStore, method: str, path: str) -> None:  # type: ignore[no-untyped-def]
    c = TestClient(app)
    r = c.request(method, path.format(id=store.alerts[0].alert_id), json={"decision": "confirmed"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    bad = c.request(
        method,
        path.format(id=store.alerts[0].alert_id),
        headers={"Authorization": "Bearer nope"},
        json={"decision": "confirmed"},
    )
    assert bad.status_code == 401
    c.cookies.set(COOKIE_NAME, "eyJ1IjoiYW5uIn0.c2lnbmF0dXJl")
    forged = c.request(method, path.format(id=store.alerts[0].alert_id), json={"decision": "confirmed"})
    assert forged.status_code == 401


def test_page_and_openapi_are_served(app) -> None:  # type: ignore[no-untyped-def]
    c = TestClient(app)
    page = c.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert c.get("/static/app.js").status_code == 200
    paths = c.get("/openapi.json").json()["paths"]
    for p in (
        "/api/alerts",
        "/api/alerts/{alert_id}",
        "/api/alerts/{alert_id}/files/{name}",
        "/api/alerts/{alert_id}/decisions",
        "/api/alerts/{alert_id}/package",
        "/api/stats",
        "/api/ledger.{fmt}",
        "/api/login",
    ):
        assert p in paths


def test_wrong_password_then_lockout_with_backoff_then_recovery(app, mono: FakeClock) -> None:  # type: ignore[no-untyped-def]
    c = TestClient(app)
    body = {"username": "bo", "password": "wrong"}
    assert [c.post("/api/login", json=body).status_code for _ in range(2)] == [401, 401]
    third = c.post("/api/login", json=body)
    assert third.status_code == 429 and int(third.headers["retry-after"]) >= 30
    # locked: even the right password is refused until the lockout ends
    right = {"username": "bo", "password": PASSWORD + "!"}
    assert c.post("/api/login", json=right).status_code == 429
    # another user from the same client is not locked by bo's failures
    assert c.post("/api/login", json={"username": "ann", "password": PASSWORD}).status_code == 200
    mono.now += 31
    fourth = c.post("/api/login", json=body)
    assert fourth.status_code == 429 and int(fourth.headers["retry-after"]) >= 60  # doubled
    mono.now += 61
    assert c.post("/api/login", json=right).status_code == 200
    assert c.post("/api/login", json=body).status_code == 401  # success cleared bo's failures


def test_unknown_user_is_refused_like_a_wrong_password(app) -> None:  # type: ignore[no-untyped-def]
    r = TestClient(app).post("/api/login", json={"username": "mallory", "password": PASSWORD})
    assert r.status_code == 401 and r.json()["detail"] == "wrong user name or password"


def test_session_cookie_csrf_and_logout(app, store: CorpusStore) -> None:  # type: ignore[no-untyped-def]
    c, csrf = _login(app)
    cookie = c.cookies.get(COOKIE_NAME)
    set_cookie = c.get("/api/session").headers.get("set-cookie")
    assert set_cookie is None
    me = c.get("/api/session").json()
    assert me["username"] == "ann" and me["csrf_token"] == csrf
    aid = store.alerts[-1].alert_id
    url = f"/api/alerts/{aid}/decisions"
    assert c.post(url, json={"decision": "note", "note": "n"}).status_code == 403  # no CSRF header
    assert (
        c.post(url, json={"decision": "note", "note": "n"}, headers={CSRF_HEADER: "guess"}).status_code == 403
    )
    cross = c.post(
        url,
        json={"decision": "note", "note": "n"},
        headers={CSRF_HEADER: csrf, "Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    ok = c.post(
        url,
        json={"decision": "note", "note": "checked the room name"},
        headers={CSRF_HEADER: csrf, "Origin": "http://127.0.0.1:8765"},
    )
    assert ok.status_code == 201 and ok.json()["decision"]["reviewer"] == "ann"
    assert c.post("/api/logout", headers={CSRF_HEADER: csrf}).status_code == 200
    replay = TestClient(app)
    replay.cookies.set(COOKIE_NAME, cookie)
    assert replay.get("/api/alerts").status_code == 401  # a logged-out cookie stays dead


def test_api_tokens_from_config_and_environment(app, store: CorpusStore) -> None:  # type: ignore[no-untyped-def]
    c = TestClient(app)
    for token, name in ((TOKEN, "ledger-robot"), (ENV_TOKEN, "api-token")):
        h = {"Authorization": f"Bearer {token}"}
        assert c.get("/api/alerts", headers=h).json()["total"] == len(store.alerts)
        r = c.post(
            f"/api/alerts/{store.alerts[-2].alert_id}/decisions",
            headers=h,
            json={"decision": "note", "note": f"via {name}"},
        )
        assert r.status_code == 201 and r.json()["decision"]["reviewer"] == name  # no CSRF for bearer tokens


# -- queue and filters ------------------------------------------------------------------------------


def test_queue_lists_newest_first_with_counts(client: tuple[TestClient, str], store: CorpusStore) -> None:
    c, _ = client
    r = c.get("/api/alerts").json()
    assert r["total"] == len(store.alerts) == len(r["items"])
    times = [a["time_ts"] for a in r["items"]]
    assert times == sorted(times, reverse=True)
    assert r["items"][0]["alert_id"] == max(store.alerts, key=lambda a: a.start_ts).alert_id
    assert r["counts"]["category"] == dict(Counter(a.category for a in store.alerts))
    assert r["counts"]["stream"] == dict(Counter(a.stream_id for a in store.alerts))
    assert r["counts"]["severity"] == dict(Counter(a.severity for a in store.alerts))
    assert sum(r["counts"]["status"].values()) == len(store.alerts)
    page = c.get("/api/alerts", params={"limit": 5, "offset": 5}).json()
    assert [a["alert_id"] for a in page["items"]] == [a["alert_id"] for a in r["items"][5:10]]


@pytest.mark.parametrize("facet", ["stream", "category", "severity", "source"])
def test_each_facet_filters_and_other_facets_count_within_it(
    client: tuple[TestClient, str], store: CorpusStore, facet: str
) -> None:
    c, _ = client
    attr = {"stream": "stream_id"}.get(facet, facet)
    for value, n in Counter(getattr(a, attr) for a in store.alerts).items():
        r = c.get("/api/alerts", params={facet: value}).json()
        want = [a for a in store.alerts if getattr(a, attr) == value]
        assert r["total"] == n and {a["alert_id"] for a in r["items"]} == {a.alert_id for a in want}
        # counts of the facet itself ignore its own filter (so the other choices stay visible)...
        assert sum(r["counts"][facet].values()) == len(store.alerts)
        # ...while the other facets count only within it
        assert r["counts"]["category"] == dict(Counter(a.category for a in want)) or facet == "category"


def _search(store: CorpusStore, needle: str) -> set[str]:
    """What the text search must find: the needle in text, context, rule, law or id."""
    return {
        a.alert_id
        for a in store.alerts
        if any(needle in x for x in (a.text, a.context, a.rule_id, a.law, a.alert_id))
    }


def test_combined_filters_text_search_and_time_range(
    client: tuple[TestClient, str], store: CorpusStore
) -> None:
    c, _ = client
    lead = Counter((a.stream_id, a.category, a.severity) for a in store.alerts).most_common(1)[0][0]
    r = c.get("/api/alerts", params=dict(zip(("stream", "category", "severity"), lead, strict=True))).json()
    want = {a.alert_id for a in store.alerts if (a.stream_id, a.category, a.severity) == lead}
    assert want and {a["alert_id"] for a in r["items"]} == want
    target = next(a for a in store.alerts if a.exact and a.matched in a.text)
    found = c.get("/api/alerts", params={"q": target.matched}).json()
    assert target.alert_id in {a["alert_id"] for a in found["items"]}
    assert {a["alert_id"] for a in found["items"]} == _search(store, target.matched)
    law = next(a.law for a in store.alerts if a.category == "price_fraud" and a.law).split()[0]
    assert {a["alert_id"] for a in c.get("/api/alerts", params={"q": law}).json()["items"]} == _search(
        store, law
    )
    assert c.get("/api/alerts", params={"q": "100%_"}).json()["total"] == len(
        _search(store, "100%_")
    )  # literal
    days = Counter(datetime.fromtimestamp(a.start_ts, TZ).date().isoformat() for a in store.alerts)
    for day, n in days.items():
        r = c.get("/api/alerts", params={"since": day, "until": day}).json()
        assert r["total"] == n
    first = min(store.alerts, key=lambda a: a.start_ts)
    r = c.get(
        "/api/alerts", params={"since": str(first.start_ts), "until": str(first.start_ts + 0.001)}
    ).json()
    assert [a["alert_id"] for a in r["items"]] == [first.alert_id]
    assert c.get("/api/alerts", params={"since": "yesterday-ish"}).status_code == 422
    assert c.get("/api/alerts", params={"status": "maybe"}).status_code == 422


# -- alert page data --------------------------------------------------------------------------------


def test_alert_detail_has_clip_moment_transcript_hits_law_and_hashes(
    client: tuple[TestClient, str], store: CorpusStore
) -> None:
    c, _ = client
    a = next(x for x in store.alerts if x.exact and x.has_snapshot)
    d = c.get(f"/api/alerts/{a.alert_id}").json()
    assert d["alert"]["law"] == a.law and d["alert"]["rule"] == a.rule_id
    assert d["alert"]["category_name"] and d["alert"]["category_name"] != a.category
    clip = d["clip"]
    assert clip["element"] == "video" and clip["media_type"] == "video/mp4"
    assert clip["start_s"] + clip["moment_offset_s"] == pytest.approx(a.start_s, abs=0.01)
    assert clip["moment_offset_s"] >= 10.0 - 0.05  # the whole pre-roll (a stream copy starts at a keyframe)
    hits = [w for u in d["transcript"]["utterances"] for w in u["words"] if w["hit"]]
    said = "".join(w["text"] for w in hits)
    assert normalize(a.matched).text in normalize(said).text  # the matched phrase, as the words wrote it
    # every marked word lies inside some detection's matched text (the alert may carry several rules'
    # terms), and the words between and around them are not marked: not the whole line
    matched = [normalize(x["matched"]).text for x in d["detections"] if x["matched"]]
    for w in hits:
        assert any(normalize(w["text"]).text in m for m in matched), (w["text"], matched)
    hit_utts = [u for u in d["transcript"]["utterances"] if u["hit"]]
    assert any(not w["hit"] for u in hit_utts for w in u["words"]), (d["detections"], [[(w["text"], w["hit"], w["start_s"]) for w in u["words"]] for u in hit_utts])
    assert len(normalize(said).text) <= sum(len(m) for m in matched) + 4
    for w in hits:
        assert w["offset_s"] == pytest.approx(w["start_s"] - d["transcript"]["clip_start_s"], abs=0.001)
    assert d["snapshot_url"] == f"/api/alerts/{a.alert_id}/files/snapshot.jpg"
    with store.db.session() as s:
        rows = {
            r.name: r.sha256
            for r in s.scalars(select(EvidenceFileRow).where(EvidenceFileRow.alert_id == a.alert_id))
        }
    assert {f["name"]: f["sha256"] for f in d["files"]} == rows
    assert c.get("/api/alerts/not-an-alert").status_code == 404


def test_price_history_alert_links_the_earlier_claim_and_its_clip(
    client: tuple[TestClient, str], store: CorpusStore
) -> None:
    c, _ = client
    d = c.get(f"/api/alerts/{store.price_history_alert}").json()
    assert d["clip"]["element"] == "audio" and d["snapshot_url"] is None  # the recordings are audio only
    assert d["contradicts"]
    for earlier in d["contradicts"]:
        other = store.by_id(earlier["alert_id"])
        assert other.start_ts < store.by_id(store.price_history_alert).start_ts
        assert earlier["alert_url"] == f"#/alert/{other.alert_id}"
        with store.db.session() as s:
            clip = s.scalar(
                select(EvidenceFileRow.name).where(
                    EvidenceFileRow.alert_id == other.alert_id, EvidenceFileRow.kind == "clip"
                )
            )
        assert earlier["clip_url"] == f"/api/alerts/{other.alert_id}/files/{clip}"
        assert c.get(earlier["clip_url"]).status_code == 200
        with store.db.session() as s:
            folder = resolve_stored(s.get(AlertRow, other.alert_id).evidence_dir, store.data_dir)
        clip_start = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["clip"]["start_s"]
        assert earlier["clip_offset_s"] == pytest.approx(earlier["start_s"] - clip_start, abs=0.001)


# -- files: range requests and traversal ------------------------------------------------------------


def test_clip_is_served_with_range_requests(client: tuple[TestClient, str], store: CorpusStore) -> None:
    c, _ = client
    a = store.alerts[0]
    url = f"/api/alerts/{a.alert_id}/files/clip.mp4"
    with store.db.session() as s:
        path = resolve_stored(s.get(AlertRow, a.alert_id).evidence_dir, store.data_dir) / "clip.mp4"
    data = path.read_bytes()
    full = c.get(url)
    assert full.status_code == 200 and full.content == data
    assert full.headers["accept-ranges"] == "bytes" and full.headers["content-type"] == "video/mp4"
    part = c.get(url, headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == data[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    tail = c.get(url, headers={"Range": "bytes=-500"})
    assert tail.status_code == 206 and tail.content == data[-500:]
    opened = c.get(url, headers={"Range": f"bytes={len(data) - 10}-"})
    assert opened.status_code == 206 and opened.content == data[-10:]
    assert c.get(url, headers={"Range": f"bytes={len(data) + 5}-"}).status_code == 416
    assert (
        hashlib.sha256(full.content).hexdigest()
        == c.get(f"/api/alerts/{a.alert_id}").json()["files"][0]["sha256"]
    )


@pytest.mark.parametrize(
    "name",
    [
        "..%2F..%2Flivewatch.db",
        "..%2Fmanifest.json",
        "%2Fetc%2Fpasswd",
        "livewatch.db",
        "%2E%2E",
        "%2E",
        "clip.mp4%00.jpg",
        "..%5C..%5Clivewatch.db",
        "review-secret",
    ],
)
def test_path_traversal_attempts_get_404(
    client: tuple[TestClient, str], store: CorpusStore, name: str
) -> None:
    c, _ = client
    r = c.get(f"/api/alerts/{store.alerts[0].alert_id}/files/{name}")
    assert r.status_code == 404
    assert b"SQLite" not in r.content


def test_files_only_by_alert_id_and_listed_name(client: tuple[TestClient, str], store: CorpusStore) -> None:
    c, _ = client
    video, audio = store.alerts[0], next(a for a in store.alerts if not a.has_snapshot)
    assert c.get(f"/api/alerts/{video.alert_id}/files/manifest.json").status_code == 200
    assert (
        c.get(f"/api/alerts/{audio.alert_id}/files/snapshot.jpg").status_code == 404
    )  # not this alert's file
    for raw in (
        f"/api/alerts/..%2F..%2F{video.alert_id}/files/clip.mp4",
        "/api/alerts/%2E%2E/files/livewatch.db",
        "/api/alerts//files/clip.mp4",
    ):
        assert c.get(raw).status_code == 404


# -- decisions --------------------------------------------------------------------------------------


def test_decisions_append_to_an_audit_trail(client: tuple[TestClient, str], store: CorpusStore) -> None:
    c, csrf = client
    a = store.alerts[0]
    url = f"/api/alerts/{a.alert_id}/decisions"
    h = {CSRF_HEADER: csrf}
    before = c.get(url).json()
    first = c.post(url, json={"decision": "false_positive", "note": "ad read, not the host"}, headers=h)
    assert first.status_code == 201 and first.json()["status"] == "false_positive"
    second = c.post(url, json={"decision": "confirmed", "note": "re-listened: the host said it"}, headers=h)
    assert second.json()["status"] == "confirmed"
    note = c.post(url, json={"decision": "note", "note": "sent to 网监 team"}, headers=h)
    assert note.json()["status"] == "confirmed"  # a note does not change the status
    trail = c.get(url).json()
    assert trail[: len(before)] == before
    assert [(d["decision"], d["reviewer"], d["note"]) for d in trail[len(before) :]] == [
        ("false_positive", "ann", "ad read, not the host"),
        ("confirmed", "ann", "re-listened: the host said it"),
        ("note", "ann", "sent to 网监 team"),
    ]
    assert trail[-3]["created_ts"] <= trail[-2]["created_ts"] <= trail[-1]["created_ts"]
    assert c.post(url, json={"decision": "note", "note": "  "}, headers=h).status_code == 422
    assert c.post(url, json={"decision": "approve"}, headers=h).status_code == 422
    assert c.post("/api/alerts/nope/decisions", json={"decision": "confirmed"}, headers=h).status_code == 404
    # the trail cannot be rewritten through the ORM either
    with store.db.session() as s:
        row = s.scalars(select(Decision).where(Decision.alert_id == a.alert_id)).first()
        assert row is not None
        row.decision = "escalated"
        with pytest.raises(AuditTrailError):
            s.commit()
        s.rollback()
        s.delete(s.get(Decision, row.id))
        with pytest.raises(AuditTrailError):
            s.commit()
    assert c.get(url).json() == trail


def test_status_filter_latest_decisions_and_rule_precision(
    client: tuple[TestClient, str], store: CorpusStore
) -> None:
    c, csrf = client
    h = {CSRF_HEADER: csrf}
    rule = Counter(a.rule_id for a in store.alerts).most_common(1)[0][0]
    absolute = [a for a in store.alerts if a.rule_id == rule]
    assert len(absolute) >= 2
    for a, decision in zip(absolute, ("false_positive", "confirmed", "escalated"), strict=False):
        c.post(f"/api/alerts/{a.alert_id}/decisions", json={"decision": decision}, headers=h)
    with store.db.session() as s:
        latest = latest_decisions(s)
        prec = rule_precision(s)
        only = latest_decisions(s, [absolute[0].alert_id, "unknown"])
    assert set(only) == {absolute[0].alert_id}
    expected = Counter(
        latest[a.alert_id].decision if a.alert_id in latest else "unreviewed" for a in store.alerts
    )
    r = c.get("/api/alerts").json()
    assert r["counts"]["status"] == dict(expected)
    for status, n in expected.items():
        got = c.get("/api/alerts", params={"status": status}).json()
        assert got["total"] == n
        assert all(a["status"] == status for a in got["items"])
    p = prec[rule]
    decided = [latest[a.alert_id].decision for a in absolute if a.alert_id in latest]
    assert p.alerts == len(absolute) and p.decided == len(decided)
    assert p.precision == pytest.approx(sum(d != "false_positive" for d in decided) / len(decided))
    api = {x["rule_id"]: x for x in c.get("/api/precision").json()}
    assert api[rule]["precision"] == pytest.approx(p.precision)


# -- statistics, ledger, package --------------------------------------------------------------------


def test_statistics_chart_and_ledger_exports(client: tuple[TestClient, str], store: CorpusStore) -> None:
    c, _ = client
    stats = c.get("/api/stats").json()
    assert stats["totals"]["alerts"] == len(store.alerts)
    days = Counter(datetime.fromtimestamp(a.start_ts, TZ).date().isoformat() for a in store.alerts)
    assert {d["day"]: d["alerts"] for d in stats["per_day"]} == dict(days)  # consecutive days here
    week = c.get("/api/stats", params={"since": "2024-04-28", "until": "2024-05-04"}).json()["per_day"]
    assert [d["day"] for d in week] == [
        f"2024-{m:02d}-{d:02d}" for m, d in ((4, 28), (4, 29), (4, 30), (5, 1), (5, 2), (5, 3), (5, 4))
    ]
    assert {d["day"]: d["alerts"] for d in week if d["alerts"]} == dict(days)  # quiet days are zeros
    assert {d["category"]: d["alerts"] for d in stats["per_category"]} == dict(
        Counter(a.category for a in store.alerts)
    )
    assert {d["stream"]: d["alerts"] for d in stats["per_stream"]} == dict(
        Counter(a.stream_id for a in store.alerts)
    )
    assert {d["rule"]: d["alerts"] for d in stats["per_rule"]} == dict(
        Counter(a.rule_id for a in store.alerts)
    )
    assert stats["totals"]["violations"] == stats["totals"]["confirmed"] + stats["totals"]["escalated"]
    svg = c.get("/api/stats/chart.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(svg.content)
    texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    for day in days:
        assert day[5:] in texts
    assert "虚假宣传" in texts and "价格欺诈" in texts

    day = min(days)
    csv_r = c.get("/api/ledger.csv", params={"since": day, "until": day})
    assert csv_r.content.startswith("\ufeff".encode())
    assert (
        f"livewatch-ledger-{day.replace('-', '')}-{day.replace('-', '')}.csv"
        in csv_r.headers["content-disposition"]
    )
    rows = list(csv.reader(io.StringIO(csv_r.content.decode("utf-8-sig"))))
    assert len(rows) - 1 == days[day]
    header = rows[0]
    status_col = header.index("状态 Status")
    with store.db.session() as s:
        latest = latest_decisions(s)
    for row in rows[1:]:
        aid = row[header.index("告警编号 Alert ID")]
        assert row[status_col] == (latest[aid].decision if aid in latest else "unreviewed")
    xlsx = c.get("/api/ledger.xlsx")
    wb = load_workbook(io.BytesIO(xlsx.content))
    ledger = wb["台账 Ledger"]
    assert ledger.max_row - 2 == len(store.alerts)
    assert [cell.value for cell in ledger[2]] == header
    summary = wb["统计 Summary"]
    assert summary["B2"].value == len(store.alerts)


def test_package_download_verifies_and_carries_the_decisions(
    client: tuple[TestClient, str], store: CorpusStore, tmp_path: Path
) -> None:
    c, csrf = client
    a = store.alerts[1]
    c.post(
        f"/api/alerts/{a.alert_id}/decisions",
        json={"decision": "escalated", "note": "案件移送"},
        headers={CSRF_HEADER: csrf},
    )
    r = c.get(f"/api/alerts/{a.alert_id}/package")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    path = tmp_path / "p.zip"
    path.write_bytes(r.content)
    report = verify_package(path, expected_manifest_sha256=r.headers["x-manifest-sha256"])
    assert report.ok and report.alert_id == a.alert_id
    assert hashlib.sha256(r.content).hexdigest() == r.headers["x-zip-sha256"]
    with zipfile.ZipFile(path) as zf:
        assert "案件移送" in zf.read("decisions.json").decode("utf-8")


def test_verify_endpoint_and_package_refusal_name_a_file_changed_on_disk(
    client: tuple[TestClient, str], store: CorpusStore
) -> None:
    c, _ = client
    a = [x for x in store.alerts if x.has_snapshot][2]
    assert c.get(f"/api/alerts/{a.alert_id}/verify").json()["ok"] is True
    with store.db.session() as s:
        snap = resolve_stored(s.get(AlertRow, a.alert_id).evidence_dir, store.data_dir) / "snapshot.jpg"
    original = snap.read_bytes()
    try:
        snap.write_bytes(original[:100] + bytes([original[100] ^ 0xFF]) + original[101:])
        v = c.get(f"/api/alerts/{a.alert_id}/verify").json()
        assert v["ok"] is False
        assert [f["name"] for f in v["files"] if f["status"] != "ok"] == ["snapshot.jpg"]
        refused = c.get(f"/api/alerts/{a.alert_id}/package")
        assert refused.status_code == 409 and "snapshot.jpg" in refused.json()["detail"]
    finally:
        snap.write_bytes(original)
    assert c.get(f"/api/alerts/{a.alert_id}/verify").json()["ok"] is True


def test_metrics_show_the_running_monitor_in_prometheus_text(
    store: CorpusStore, client: tuple[TestClient, str]
) -> None:
    c, _ = client
    status_file = store.data_dir / "monitor" / "status.json"
    status_file.parent.mkdir(parents=True, exist_ok=True)
    status = {
        "running": True,
        "updated_ts": time.time(),
        "streams": {
            "room-x": {
                "state": "recording",
                "detail": "",
                "broadcast_started_ts": time.time() - 90,
                "asr_lag_s": 1.5,
                "max_asr_lag_s": 4.25,
                "lagging": False,
            }
        },
    }
    status_file.write_text(json.dumps(status), encoding="utf-8")
    try:
        r = c.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        lines = r.text.splitlines()
        assert "livewatch_monitor_up 1" in lines
        assert 'livewatch_stream_recording{stream="room-x"} 1' in lines
        assert 'livewatch_stream_asr_lag_seconds{stream="room-x"} 1.5' in lines
        assert 'livewatch_stream_asr_lag_max_seconds{stream="room-x"} 4.25' in lines
        uptime = next(x for x in lines if x.startswith('livewatch_stream_uptime_seconds{stream="room-x"}'))
        assert 89 <= float(uptime.split()[-1]) <= 120
        assert any(x.startswith("# TYPE livewatch_stream_alerts_today gauge") for x in lines)
    finally:
        status_file.unlink()
    r = c.get("/metrics")
    assert "livewatch_monitor_up 0" in r.text.splitlines()  # no status file: no monitor running
    assert "room-x" not in r.text


def test_streams_show_the_process_and_host_recording_each_stream(
    store: CorpusStore, client: tuple[TestClient, str]
) -> None:
    """A stream recorded by a bus ingest worker (no monitor status file): /api/streams and /metrics name the
    worker and its host, from the live broadcast's owner and the worker's lease in the store."""
    c, _ = client
    now = time.time()
    with store.db.session() as s, s.begin():
        LiveStore.start_broadcast(
            s, broadcast_id="served-by-test", stream_id="room-bus", url="hls://example", name="room-bus",
            folder=str(store.data_dir / "recordings" / "room-bus"), started_ts=now - 30, source_start_s=None,
            rules_version="", owner="ingest-boxa-42",
        )  # fmt: skip
        take_lease(s, "ingest-boxa-42", "/data", now, 60.0)
    try:
        rows = {r["stream_id"]: r for r in c.get("/api/streams").json()["streams"]}
        r = rows["room-bus"]
        by = f"ingest-boxa-42@{this_host()}"
        assert (r["state"], r["served_by"], r["server_alive"]) == ("recording", by, True)
        assert (
            f'livewatch_stream_served_by{{stream="room-bus",by="{by}"}} 1'
            in c.get("/metrics").text.splitlines()
        )
    finally:
        with store.db.session() as s, s.begin():
            s.query(Broadcast).filter(Broadcast.id == "served-by-test").delete()
            s.query(Stream).filter(Stream.id == "room-bus").delete()
            s.query(MonitorLease).filter(MonitorLease.owner == "ingest-boxa-42").delete()
