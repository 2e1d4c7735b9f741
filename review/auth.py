"""Authentication for the review app: argon2 passwords, signed session cookies, API tokens, login limits.

Sessions are server-side: each login is a row of the database's `review_sessions` table (the session
id's SHA-256, user, issue and expiry time, revocation time), kept by `DbSessionStore`. The cookie is
HMAC-SHA256-signed JSON (user, session id, CSRF token, expiry) naming that row; a request is let in
only while the row exists, is not revoked and has not expired, so a logout holds across restarts and
across review processes sharing the database. The CSRF token travels inside the signed cookie and must
come back in the `X-CSRF-Token` header of every state-changing request made with the cookie.

Login limits: failures back off per (client, user), per client (name spraying) and per account from
any client (address rotation). The client is the TCP peer; `X-Forwarded-For` is honoured only when
the peer is a configured trusted proxy (`client_address`).

Concurrency: `SessionSigner` and `LoginLimiter` are shared by all request threads. `DbSessionStore`
opens a database session per call (the database is the lock); `MemorySessionStore` and `LoginLimiter`
guard their state with a lock. A restart clears lockouts, never sessions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

if TYPE_CHECKING:
    from store.db import Database

__all__ = [
    "DbSessionStore",
    "LoginLimiter",
    "MemorySessionStore",
    "SessionData",
    "SessionSigner",
    "SessionStore",
    "client_address",
    "hash_password",
    "hash_token",
    "load_or_create_secret",
    "new_token",
    "parse_networks",
    "session_key",
    "verify_password",
]

logger = logging.getLogger(__name__)

_hasher = PasswordHasher()
_dummy_hash: str | None = None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches. An unknown user (`None`) still costs one argon2 verification, so
    response time does not tell which user names exist."""
    global _dummy_hash
    if password_hash is None:
        if _dummy_hash is None:
            _dummy_hash = _hasher.hash(secrets.token_hex(16))
        password_hash = _dummy_hash
        known = False
    else:
        known = True
    try:
        return _hasher.verify(password_hash, password) and known
    except VerifyMismatchError:
        return False
    except (InvalidHashError, VerificationError):
        logger.warning("a configured review password hash cannot be verified; check review.users")
        return False


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def load_or_create_secret(path: Path) -> bytes:
    """A random signing key kept beside the database so logins survive a restart."""
    if path.is_file():
        data = path.read_bytes().strip()
        if len(data) >= 32:
            return data
    key = secrets.token_hex(32).encode("ascii")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(key)
    tmp.chmod(0o600)
    tmp.replace(path)
    return key


@dataclass(frozen=True, slots=True)
class SessionData:
    sid: str
    username: str
    csrf: str
    issued_ts: float
    expires_ts: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def session_key(sid: str) -> str:
    """What the store keeps for a session id: its SHA-256 (a copy of the table opens no session)."""
    return hashlib.sha256(sid.encode("utf-8")).hexdigest()


class SessionStore(Protocol):
    """Where sessions live; keys are `session_key(sid)`."""

    def add(
        self, key: str, username: str, created_ts: float, expires_ts: float, client: str | None
    ) -> None: ...

    def active(self, key: str, now: float) -> bool: ...

    def revoke(self, key: str, now: float) -> None: ...


class MemorySessionStore:
    """Sessions in this process only (tests, and tools that need no restart-proof logout)."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[float, float | None]] = {}  # key -> (expires_ts, revoked_ts)
        self._lock = threading.Lock()

    def add(self, key: str, username: str, created_ts: float, expires_ts: float, client: str | None) -> None:
        with self._lock:
            self._rows = {k: v for k, v in self._rows.items() if v[0] > created_ts}
            self._rows[key] = (expires_ts, None)

    def active(self, key: str, now: float) -> bool:
        with self._lock:
            row = self._rows.get(key)
        return row is not None and row[1] is None and row[0] > now

    def revoke(self, key: str, now: float) -> None:
        with self._lock:
            if key in self._rows:
                self._rows[key] = (self._rows[key][0], now)


class DbSessionStore:
    """Sessions in the database's `review_sessions` table: they survive restarts, and a logout in one
    review process ends the session in all of them. Rows expired more than `keep_expired_s` ago are
    deleted at the next login."""

    def __init__(self, db: Database, keep_expired_s: float = 7 * 86400.0) -> None:
        self._db = db
        self.keep_expired_s = keep_expired_s

    def add(self, key: str, username: str, created_ts: float, expires_ts: float, client: str | None) -> None:
        from sqlalchemy import delete

        from store.models import ReviewSession

        with self._db.session() as s:
            s.execute(
                delete(ReviewSession).where(ReviewSession.expires_ts < created_ts - self.keep_expired_s)
            )
            s.add(
                ReviewSession(
                    id=key,
                    username=username,
                    created_ts=created_ts,
                    expires_ts=expires_ts,
                    client=(client or None) and client[:64],
                )
            )
            s.commit()

    def active(self, key: str, now: float) -> bool:
        from store.models import ReviewSession

        with self._db.session() as s:
            row = s.get(ReviewSession, key)
            return row is not None and row.revoked_ts is None and row.expires_ts > now

    def revoke(self, key: str, now: float) -> None:
        from sqlalchemy import update

        from store.models import ReviewSession

        with self._db.session() as s:
            s.execute(
                update(ReviewSession)
                .where(ReviewSession.id == key, ReviewSession.revoked_ts.is_(None))
                .values(revoked_ts=now)
            )
            s.commit()


class SessionSigner:
    """Issues and reads session cookies; `store` says which sessions exist and are not revoked."""

    def __init__(
        self,
        secret: bytes,
        ttl_s: float,
        clock: Callable[[], float] = time.time,
        store: SessionStore | None = None,
    ) -> None:
        self._key = hashlib.sha256(b"livewatch-review-session:" + secret).digest()
        self.ttl_s = ttl_s
        self._clock = clock
        self.store: SessionStore = store if store is not None else MemorySessionStore()

    def issue(self, username: str, client: str | None = None) -> tuple[str, SessionData]:
        now = self._clock()
        data = SessionData(
            secrets.token_urlsafe(16), username, secrets.token_urlsafe(24), now, now + self.ttl_s
        )
        self.store.add(session_key(data.sid), username, now, data.expires_ts, client)
        body = _b64(
            json.dumps(
                {
                    "s": data.sid,
                    "u": data.username,
                    "c": data.csrf,
                    "i": data.issued_ts,
                    "e": data.expires_ts,
                },
                separators=(",", ":"),
            ).encode("utf-8")
        )
        return f"{body}.{self._sign(body)}", data

    def read(self, cookie: str | None) -> SessionData | None:
        if not cookie or cookie.count(".") != 1:
            return None
        body, sig = cookie.split(".")
        if not hmac.compare_digest(sig, self._sign(body)):
            return None
        try:
            raw = json.loads(_unb64(body))
            data = SessionData(str(raw["s"]), str(raw["u"]), str(raw["c"]), float(raw["i"]), float(raw["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        now = self._clock()
        if data.expires_ts <= now or not self.store.active(session_key(data.sid), now):
            return None
        return data

    def revoke(self, data: SessionData) -> None:
        self.store.revoke(session_key(data.sid), self._clock())

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest())


@dataclass(slots=True)
class _Failures:
    count: int
    last_ts: float
    locked_until: float


_ACCOUNT = "\0account"  # the client part of per-account keys (no address looks like it)


def parse_networks(items: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Addresses or CIDRs (``10.0.0.0/8``, ``::1``); raises ValueError on a bad one."""
    return [ipaddress.ip_network(x.strip(), strict=False) for x in items]


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_address(
    peer: str | None,
    forwarded_for: str | None,
    trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> str:
    """The client a login limit applies to: the TCP peer, unless the peer is a trusted proxy; then the
    rightmost `X-Forwarded-For` address that is not itself a trusted proxy (what the proxy saw)."""

    def is_trusted(addr: str) -> bool:
        ip = _ip(addr)
        return ip is not None and any(ip in net for net in trusted)

    peer = peer or "unknown"
    if not forwarded_for or not is_trusted(peer):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if _ip(hop) is None:
            return peer  # a malformed chain: fall back to the proxy itself
        if not is_trusted(hop):
            return hop
    return peer


class LoginLimiter:
    """Failed-login backoff per (client, user), more loosely per client (against name spraying), and per
    account from any client (against address rotation).

    After `max_failures` failures a key is locked for `lockout_s`, doubling with each further failure up to
    `max_lockout_s`; the per-client key allows `client_factor` times as many, the per-account key
    `account_factor` times as many. A success clears the (client, user) key only. Keys are forgotten
    after `forget_s` quiet.
    """

    def __init__(
        self,
        max_failures: int = 5,
        lockout_s: float = 30.0,
        max_lockout_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        forget_s: float = 3600.0,
        client_factor: int = 4,
        account_factor: int = 2,
    ) -> None:
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self.max_lockout_s = max_lockout_s
        self.forget_s = forget_s
        self.client_factor = client_factor
        self.account_factor = account_factor
        self._clock = clock
        self._state: dict[tuple[str, str | None], _Failures] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str, username: str) -> float:
        """Seconds until this client may try this user again; 0 when it may try now."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            waits = [
                f.locked_until - now
                for k in ((client, username), (client, None), (_ACCOUNT, username))
                if (f := self._state.get(k)) is not None
            ]
        return max([0.0, *waits])

    def failure(self, client: str, username: str) -> float:
        """Record a failed login; return the lockout now in force (0 if none)."""
        now = self._clock()
        with self._lock:
            for key, limit in (
                ((client, username), self.max_failures),
                ((client, None), self.max_failures * self.client_factor),
                ((_ACCOUNT, username), self.max_failures * self.account_factor),
            ):
                f = self._state.setdefault(key, _Failures(0, now, 0.0))
                f.count += 1
                f.last_ts = now
                if f.count >= limit:
                    wait = min(self.max_lockout_s, self.lockout_s * 2 ** (f.count - limit))
                    f.locked_until = max(f.locked_until, now + wait)
        logger.warning("failed review login for %r from %s", username, client)
        return self.retry_after(client, username)

    def success(self, client: str, username: str) -> None:
        with self._lock:
            self._state.pop((client, username), None)

    def _expire(self, now: float) -> None:
        stale = [
            k for k, f in self._state.items() if now - f.last_ts > self.forget_s and f.locked_until <= now
        ]
        for k in stale:
            del self._state[k]
