"""Authentication for the review app: argon2 passwords, signed session cookies, API tokens, login limits.

Session cookies are stateless, HMAC-SHA256-signed JSON (user, session id, CSRF token, expiry); logging
out revokes the session id in memory until it expires. The CSRF token travels inside the signed cookie
and must come back in the `X-CSRF-Token` header of every state-changing request made with the cookie.

Concurrency: `SessionSigner` and `LoginLimiter` are shared by all request threads and guard their
in-memory state with a lock; both lose that state on restart (revoked sessions expire anyway, and a
restart clears lockouts, which an attacker cannot trigger remotely).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "LoginLimiter",
    "SessionData",
    "SessionSigner",
    "hash_password",
    "hash_token",
    "load_or_create_secret",
    "new_token",
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


class SessionSigner:
    def __init__(self, secret: bytes, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self._key = hashlib.sha256(b"livewatch-review-session:" + secret).digest()
        self.ttl_s = ttl_s
        self._clock = clock
        self._revoked: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self, username: str) -> tuple[str, SessionData]:
        now = self._clock()
        data = SessionData(
            secrets.token_urlsafe(16), username, secrets.token_urlsafe(24), now, now + self.ttl_s
        )
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
        if data.expires_ts <= now:
            return None
        with self._lock:
            if data.sid in self._revoked:
                return None
        return data

    def revoke(self, data: SessionData) -> None:
        now = self._clock()
        with self._lock:
            self._revoked = {k: v for k, v in self._revoked.items() if v > now}
            self._revoked[data.sid] = data.expires_ts

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest())


@dataclass(slots=True)
class _Failures:
    count: int
    last_ts: float
    locked_until: float


class LoginLimiter:
    """Failed-login backoff per (client, user) and, more loosely, per client (against name spraying).

    After `max_failures` failures a key is locked for `lockout_s`, doubling with each further failure up to
    `max_lockout_s`. A success clears the (client, user) key. Keys are forgotten after `forget_s` quiet.
    """

    def __init__(
        self,
        max_failures: int = 5,
        lockout_s: float = 30.0,
        max_lockout_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        forget_s: float = 3600.0,
        client_factor: int = 4,
    ) -> None:
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self.max_lockout_s = max_lockout_s
        self.forget_s = forget_s
        self.client_factor = client_factor
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
                for k in ((client, username), (client, None))
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
