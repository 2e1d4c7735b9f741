"""Session hygiene (issue 12): logout survives a restart; X-Forwarded-For only from trusted proxies;
a per-account login limit against address rotation."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from review.app import COOKIE_NAME, CSRF_HEADER, create_app
from review.auth import LoginLimiter, SessionSigner, client_address, hash_password, parse_networks
from review.config import ReviewConfig, ReviewUser
from store.db import Database

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


def test_revocations_expire_from_the_file(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "revoked.json"
    s1 = SessionSigner(b"k" * 32, 60.0, clock, revoked_path=path)
    cookie, data = s1.issue("ann")
    s1.revoke(data)
    assert SessionSigner(b"k" * 32, 60.0, clock, revoked_path=path).read(cookie) is None
    clock.now += 61
    s3 = SessionSigner(b"k" * 32, 60.0, clock, revoked_path=path)
    assert s3._revoked == {}  # expired entries are dropped on load


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
