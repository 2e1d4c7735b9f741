"""Session hygiene (issue 12): sessions in the database, so a logout survives a restart and holds in
every review process; X-Forwarded-For only from trusted proxies; a per-account login limit against
address rotation; undo of a decision within a few seconds, the audit trail kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from review.app import COOKIE_NAME, CSRF_HEADER, create_app
from review.auth import (
    DbSessionStore,
    LoginLimiter,
    MemorySessionStore,
    SessionSigner,
    _unb64,
    client_address,
    hash_password,
    parse_networks,
    session_key,
)
from review.config import ReviewConfig, ReviewUser
from review.decisions import UNDO_WINDOW_S
from review.queries import AlertFilter, queue
from store.db import Database
from store.models import AlertRow, Broadcast, ReviewSession

PASSWORD = "correct horse battery staple"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_app(data_dir: Path, db: Database, **cfg: object):  # type: ignore[no-untyped-def]
    config = ReviewConfig(
        users=[ReviewUser(username="ann", password_hash=hash_password(PASSWORD))],
        login_max_failures=3,
        **cfg,  # type: ignore[arg-type]
    )
    return create_app(db, data_dir, config, tool_version="test", monotonic=Clock())


@pytest.fixture
def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    d = Database.for_data_dir(tmp_path)
    yield d
    d.dispose()


def test_a_logged_out_cookie_stays_dead_after_a_restart(tmp_path: Path, db: Database) -> None:
    app1 = make_app(tmp_path, db)
    c = TestClient(app1)
    r = c.post("/api/login", json={"username": "ann", "password": PASSWORD})
    assert r.status_code == 200
    cookie = c.cookies.get(COOKIE_NAME)
    other = TestClient(app1)
    r2 = other.post("/api/login", json={"username": "ann", "password": PASSWORD})
    other_cookie = other.cookies.get(COOKIE_NAME)
    assert c.post("/api/logout", headers={CSRF_HEADER: r.json()["csrf_token"]}).status_code == 200
    assert r2.status_code == 200

    app2 = make_app(tmp_path, db)  # the review app restarted (same data directory, same secret)
    replay = TestClient(app2)
    replay.cookies.set(COOKIE_NAME, cookie)
    assert replay.get("/api/alerts").status_code == 401
    alive = TestClient(app2)
    alive.cookies.set(COOKIE_NAME, other_cookie)
    assert alive.get("/api/session").status_code == 200  # a session not logged out still works


def test_sessions_live_in_the_database_not_in_a_file(tmp_path: Path, db: Database) -> None:
    c = TestClient(make_app(tmp_path, db))
    r = c.post("/api/login", json={"username": "ann", "password": PASSWORD})
    assert r.status_code == 200
    with db.session() as s:
        rows = list(s.scalars(select(ReviewSession)))
    assert [(x.username, x.revoked_ts) for x in rows] == [("ann", None)]
    assert rows[0].id == session_key(json.loads(_unb64(c.cookies[COOKIE_NAME].split(".")[0]))["s"])
    assert rows[0].expires_ts == pytest.approx(rows[0].created_ts + ReviewConfig().session_ttl_s)
    assert c.post("/api/logout", headers={CSRF_HEADER: r.json()["csrf_token"]}).status_code == 200
    with db.session() as s:
        assert s.scalars(select(ReviewSession.revoked_ts)).one() is not None
    assert not (tmp_path / "review-revoked-sessions.json").exists()


def test_a_session_row_deleted_or_revoked_elsewhere_ends_the_session(tmp_path: Path, db: Database) -> None:
    app1, app2 = make_app(tmp_path, db), make_app(tmp_path, db)  # two review processes, one database
    c = TestClient(app1)
    r = c.post("/api/login", json={"username": "ann", "password": PASSWORD})
    other = TestClient(app2)
    other.cookies.set(COOKIE_NAME, c.cookies[COOKIE_NAME])
    assert other.get("/api/session").status_code == 200
    assert c.post("/api/logout", headers={CSRF_HEADER: r.json()["csrf_token"]}).status_code == 200
    assert other.get("/api/session").status_code == 401  # logged out in one process: out in all
    c2 = TestClient(app1)
    assert c2.post("/api/login", json={"username": "ann", "password": PASSWORD}).status_code == 200
    with db.session() as s, s.begin():
        s.execute(delete(ReviewSession))  # an operator ends every session
    assert c2.get("/api/session").status_code == 401


def test_a_cookie_without_a_session_row_is_refused(db: Database) -> None:
    """A validly signed cookie for a session the database never saw (made before revision 0004, or
    with a stolen secret) does not get in."""
    clock = Clock()
    issuer = SessionSigner(b"k" * 32, 60.0, clock)  # its own in-memory store
    cookie, _ = issuer.issue("ann")
    reader = SessionSigner(b"k" * 32, 60.0, clock, store=DbSessionStore(db))
    assert issuer.read(cookie) is not None and reader.read(cookie) is None


def test_sessions_expire_by_time_and_old_rows_are_purged(db: Database) -> None:
    clock = Clock()
    store = DbSessionStore(db, keep_expired_s=100.0)
    signer = SessionSigner(b"k" * 32, 60.0, clock, store=store)
    cookie, data = signer.issue("ann", "203.0.113.5")
    assert signer.read(cookie) == data
    clock.now += 59
    assert signer.read(cookie) is not None
    clock.now += 2
    assert signer.read(cookie) is None  # expired
    with db.session() as s:
        assert s.scalars(select(ReviewSession.client)).one() == "203.0.113.5"
    clock.now += 200
    signer.issue("bo")  # a login deletes rows expired more than keep_expired_s ago
    with db.session() as s:
        assert list(s.scalars(select(ReviewSession.username))) == ["bo"]


def test_revoked_sessions_stay_revoked_in_memory_too() -> None:
    clock = Clock()
    signer = SessionSigner(b"k" * 32, 60.0, clock, store=MemorySessionStore())
    cookie, data = signer.issue("ann")
    signer.revoke(data)
    assert signer.read(cookie) is None
    forged = SessionSigner(b"x" * 32, 60.0, clock, store=signer.store)
    assert forged.read(cookie) is None  # another secret: the signature fails first


# -- undo -------------------------------------------------------------------------------------------


def _alert_db(db: Database, *ids: str) -> None:
    with db.session() as s, s.begin():
        s.add(Broadcast(id="b1", kind="file", source="a.mp4", started_ts=None, created_ts=1000.0))
        s.flush()
        for aid in ids:
            s.add(
                AlertRow(
                    id=aid,
                    broadcast_id="b1",
                    stream_id=None,
                    category="false_claim",
                    code="F1",
                    rule_id="r1",
                    severity="high",
                    source="speech",
                    start_s=1.0,
                    end_s=2.0,
                    start_ts=None,
                    text="全网最低",
                    rules_version="v1",
                    evidence_status="done",
                    payload={},
                    created_ts=1000.0,
                )
            )


def _status(db: Database, alert_id: str) -> str:
    with db.session() as s:
        row = s.get(AlertRow, alert_id)
        assert row is not None
        return str(row.status)


def test_undo_restores_the_status_before_and_keeps_the_audit_trail(tmp_path: Path, db: Database) -> None:
    _alert_db(db, "a1")
    clock = Clock()
    app = create_app(
        db,
        tmp_path,
        ReviewConfig(users=[ReviewUser(username="ann", password_hash=hash_password(PASSWORD))]),
        clock=clock,
    )
    c = TestClient(app)
    csrf = {
        CSRF_HEADER: c.post("/api/login", json={"username": "ann", "password": PASSWORD}).json()["csrf_token"]
    }
    assert c.get("/api/session").json()["undo_window_s"] == UNDO_WINDOW_S
    first = c.post("/api/alerts/a1/decisions", json={"decision": "confirmed"}, headers=csrf).json()[
        "decision"
    ]
    clock.now += 60  # long after: the first decision stays
    r = c.post("/api/alerts/a1/decisions", json={"decision": "false_positive"}, headers=csrf)
    second = r.json()["decision"]
    assert _status(db, "a1") == "false_positive"
    clock.now += 2
    r = c.post(f"/api/alerts/a1/decisions/{second['id']}/undo", headers=csrf)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "confirmed" and _status(db, "a1") == "confirmed"
    assert body["decision"]["undoes_id"] == second["id"] and body["decision"]["decision"] == "confirmed"
    trail = [(d["decision"], d["undoes_id"]) for d in c.get("/api/alerts/a1/decisions").json()]
    assert trail == [("confirmed", None), ("false_positive", None), ("confirmed", second["id"])]
    # an undo cannot be undone, and the first decision is long past its window
    assert c.post(f"/api/alerts/a1/decisions/{body['decision']['id']}/undo", headers=csrf).status_code == 409
    r = c.post(f"/api/alerts/a1/decisions/{first['id']}/undo", headers=csrf)
    assert r.status_code == 409 and "too late" in r.json()["detail"]


def test_undo_of_the_only_decision_makes_the_alert_unreviewed_again(tmp_path: Path, db: Database) -> None:
    _alert_db(db, "a1", "a2")
    clock = Clock()
    users = [ReviewUser(username=u, password_hash=hash_password(PASSWORD)) for u in ("ann", "bo")]
    app = create_app(db, tmp_path, ReviewConfig(users=users), clock=clock)
    ann, bo = TestClient(app), TestClient(app)
    ha = {
        CSRF_HEADER: ann.post("/api/login", json={"username": "ann", "password": PASSWORD}).json()[
            "csrf_token"
        ]
    }
    hb = {
        CSRF_HEADER: bo.post("/api/login", json={"username": "bo", "password": PASSWORD}).json()["csrf_token"]
    }
    d = ann.post("/api/alerts/a1/decisions", json={"decision": "escalated"}, headers=ha).json()["decision"]
    r = bo.post(f"/api/alerts/a1/decisions/{d['id']}/undo", headers=hb)
    assert r.status_code == 409 and "reviewer who made" in r.json()["detail"]  # not bo's to take back
    assert ann.post(f"/api/alerts/a2/decisions/{d['id']}/undo", headers=ha).status_code == 404  # other alert
    assert ann.post(f"/api/alerts/a1/decisions/{d['id']}/undo").status_code == 403  # no CSRF token
    clock.now += 1
    r = ann.post(f"/api/alerts/a1/decisions/{d['id']}/undo", headers=ha)
    assert r.status_code == 201 and r.json()["status"] == "unreviewed"
    assert _status(db, "a1") == "unreviewed"
    with db.session() as s:
        assert sorted(i["alert_id"] for i in queue(s, AlertFilter(status="unreviewed")).items) == ["a1", "a2"]
    # too late: a decision older than the window stays
    d2 = ann.post("/api/alerts/a2/decisions", json={"decision": "confirmed"}, headers=ha).json()["decision"]
    clock.now += UNDO_WINDOW_S + 1
    r = ann.post(f"/api/alerts/a2/decisions/{d2['id']}/undo", headers=ha)
    assert r.status_code == 409 and "too late" in r.json()["detail"]
    note = ann.post("/api/alerts/a2/decisions", json={"decision": "note", "note": "x"}, headers=ha).json()
    assert ann.post(f"/api/alerts/a2/decisions/{note['decision']['id']}/undo", headers=ha).status_code == 409
    assert _status(db, "a2") == "confirmed"
    # within the window, but a later decision has been made since
    d3 = ann.post("/api/alerts/a2/decisions", json={"decision": "false_positive"}, headers=ha).json()[
        "decision"
    ]
    ann.post("/api/alerts/a2/decisions", json={"decision": "escalated"}, headers=ha)
    r = ann.post(f"/api/alerts/a2/decisions/{d3['id']}/undo", headers=ha)
    assert r.status_code == 409 and "later decision" in r.json()["detail"]


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() -> None:
    trusted = parse_networks(["127.0.0.1", "10.0.0.0/8"])
    assert client_address("203.0.113.9", "1.2.3.4", trusted) == "203.0.113.9"
    assert client_address("203.0.113.9", "1.2.3.4", []) == "203.0.113.9"
    assert client_address("127.0.0.1", "1.2.3.4", []) == "127.0.0.1"
    # through the proxy: the address the proxy saw (rightmost untrusted), not what the client claims
    assert client_address("127.0.0.1", "6.6.6.6, 198.51.100.7", trusted) == "198.51.100.7"
    assert client_address("127.0.0.1", "198.51.100.7, 10.1.2.3", trusted) == "198.51.100.7"
    assert client_address("127.0.0.1", "not-an-ip", trusted) == "127.0.0.1"
    assert client_address("testclient", "1.2.3.4", trusted) == "testclient"


def test_rotating_forwarded_for_does_not_bypass_the_limit(tmp_path: Path, db: Database) -> None:
    c = TestClient(make_app(tmp_path, db))
    codes = [
        c.post(
            "/api/login",
            json={"username": "ann", "password": "wrong"},
            headers={"X-Forwarded-For": f"198.51.100.{i}"},
        ).status_code
        for i in range(4)
    ]
    assert codes == [401, 401, 429, 429]


def test_per_account_limit_against_address_rotation() -> None:
    clock = Clock()
    lim = LoginLimiter(max_failures=3, lockout_s=30.0, clock=clock, account_factor=2)
    for i in range(5):
        assert lim.failure(f"198.51.100.{i}", "ann") == 0.0  # each address below its own limit
    assert lim.failure("198.51.100.99", "ann") >= 30.0  # sixth failure for the account
    assert lim.retry_after("203.0.113.1", "ann") > 0  # from a fresh address too
    assert lim.retry_after("203.0.113.1", "bo") == 0  # other accounts unaffected
    clock.now += 31
    assert lim.retry_after("203.0.113.1", "ann") == 0


def test_trusted_proxies_are_validated() -> None:
    with pytest.raises(ValueError, match="not an address"):
        ReviewConfig(trusted_proxies=["proxy.example"])
