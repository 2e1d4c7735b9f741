"""Configuration of the review web app (`review:` in the root config)."""

from __future__ import annotations

import ipaddress
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["ApiToken", "ReviewConfig", "ReviewUser"]


class ReviewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(
        ...,
        min_length=1,
        max_length=128,
        description="Login name; recorded as the reviewer on every decision.",
    )
    password_hash: str = Field(
        ..., description="argon2 hash of the password; make one with `livewatch review --create-user NAME`."
    )

    @field_validator("username")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not re.fullmatch(r"[\w.@-]+", v):
            raise ValueError("use letters, digits, '.', '@', '_' or '-' only")
        return v

    @field_validator("password_hash")
    @classmethod
    def _argon2(cls, v: str) -> str:
        if not v.startswith("$argon2"):
            raise ValueError("must be an argon2 hash ($argon2id$...), never a plain password")
        return v


class ApiToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        ..., min_length=1, max_length=128, description="Who uses the token; recorded as the reviewer."
    )
    sha256: str = Field(
        ..., description="SHA-256 (hex) of the token; make one with `livewatch review --create-token NAME`."
    )

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str) -> str:
        v = v.lower()
        if not re.fullmatch(r"[0-9a-f]{64}", v):
            raise ValueError("must be 64 hex digits (the SHA-256 of the token, not the token)")
        return v


class ReviewConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(
        "127.0.0.1", description="Address the review app listens on; keep 127.0.0.1 behind a proxy."
    )
    port: int = Field(8765, ge=1, le=65535, description="TCP port of the review app.")
    users: list[ReviewUser] = Field(default_factory=list, description="Reviewers who may log in.")
    api_tokens: list[ApiToken] = Field(
        default_factory=list,
        description="Tokens for `Authorization: Bearer` API access (the env LIVEWATCH_REVIEW_TOKEN adds one more).",
    )
    session_secret: str | None = Field(
        None,
        description="Key that signs session cookies; default: a random key kept in <data_dir>/review-secret.",
    )
    session_ttl_s: float = Field(12 * 3600, gt=0, description="How long a login lasts.")
    cookie_secure: bool = Field(
        False, description="Mark the session cookie Secure (set when served over HTTPS by a proxy)."
    )
    login_max_failures: int = Field(
        5, ge=1, description="Failed logins per client and user before logins are refused for a while."
    )
    login_lockout_s: float = Field(
        30.0,
        gt=0,
        description="First lockout after too many failed logins; doubles with each further failure.",
    )
    login_lockout_max_s: float = Field(900.0, gt=0, description="Longest lockout after failed logins.")
    login_account_factor: int = Field(
        2,
        ge=1,
        description="Failed logins for one user from any clients, as a multiple of login_max_failures, "
        "before that user's logins are refused for a while (against address rotation).",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or CIDRs of reverse proxies whose X-Forwarded-For header names the client "
        "(e.g. [127.0.0.1]); from anyone else the header is ignored. Empty: never trusted.",
    )
    timezone: str = Field(
        "Asia/Shanghai", description="Time zone for days in statistics, the ledger and printed summaries."
    )
    page_size: int = Field(100, ge=1, le=1000, description="Alerts per page of the queue.")

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: list[str]) -> list[str]:
        for item in v:
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError:
                raise ValueError(f"not an address or CIDR: {item!r}") from None
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @model_validator(mode="after")
    def _unique_users(self) -> ReviewConfig:
        names = [u.username for u in self.users]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate review users: {', '.join(dup)}")
        return self
