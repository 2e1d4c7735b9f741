"""The review web app: a FastAPI JSON API and one dependency-free page (review/static) that uses it.

Security model:
- every /api route but /api/login needs a principal: a signed session cookie (after login) or
  `Authorization: Bearer TOKEN` (tokens configured by SHA-256, plus $LIVEWATCH_REVIEW_TOKEN);
- state-changing requests made with the cookie must echo the session's CSRF token in `X-CSRF-Token`,
  and a cross-origin `Origin` header is refused outright;
- evidence files are served by alert id and a name the database lists for that alert, never by a
  path from the request; clips support HTTP range requests so the player can seek;
- failed logins back off per client and user, per client and per account (`LoginLimiter`); the client
  is the TCP peer, or X-Forwarded-For only from `review.trusted_proxies`;
- sessions live in the database (`review_sessions`): a logout, or an expiry, ends the session for
  every review process, across restarts.

Concurrency: one process; uvicorn runs the synchronous endpoints in its thread pool, each request
opens its own database session, and the only shared mutable state (login failures) sits behind a lock
in review.auth. The app only appends decisions (an undo is one more row); it never changes alerts or
evidence.
"""

# No `from __future__ import annotations`: FastAPI resolves the dependency aliases defined inside
# create_app from the live annotations.

import hmac
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from alerts.package import EvidenceIntegrityError
from alerts.signing import SiteKey, load_or_create_site_key
from review import charts, ledger
from review.auth import (
    DbSessionStore,
    LoginLimiter,
    SessionData,
    SessionSigner,
    client_address,
    hash_token,
    load_or_create_secret,
    parse_networks,
    verify_password,
)
from review.config import ReviewConfig
from review.decisions import (
    DECISIONS,
    NOTE,
    UNDO_WINDOW_S,
    UndoRefused,
    add_decision,
    decision_dict,
    history,
    rule_precision,
    undo_decision,
)
from review.detail import (
    PackageNotAvailable,
    alert_detail,
    evidence_file_path,
    export_package,
    file_states,
    media_type,
)
from review.evidence_checks import (
    VerifyScheduler,
    evidence_metrics,
    manifest_signature_state,
    queue_states,
    record_checks,
)
from review.integrity import EvidenceChecker
from review.monitor_status import (
    db_write_status,
    deferred_status,
    metrics_text,
    rules_status,
    stream_statuses,
    verify_status,
)
from review.queries import AlertFilter, BadCursor, iter_ledger_values, queue, statistics
from store.db import Database
from store.models import AlertRow, EvidenceFileRow

__all__ = ["COOKIE_NAME", "CSRF_HEADER", "Principal", "create_app"]

logger = logging.getLogger(__name__)

COOKIE_NAME = "livewatch_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STATIC_DIR = Path(__file__).resolve().parent / "static"
_CSP = (
    "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; script-src 'self'; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    via: Literal["session", "token"]
    session: SessionData | None = None


class LoginBody(BaseModel):
    username: str = Field(..., max_length=128, description="Reviewer's login name.")
    password: str = Field(..., max_length=1024, description="Reviewer's password.")


class DecisionBody(BaseModel):
    decision: Literal["confirmed", "false_positive", "escalated", "note"] = Field(
        ..., description="confirmed, false_positive or escalated set the status; note only adds a remark."
    )
    note: str = Field("", max_length=4000, description="Why; required for a note.")


@dataclass(slots=True)
class _State:
    db: Database
    data_dir: Path
    cfg: ReviewConfig
    signer: SessionSigner
    limiter: LoginLimiter
    users: dict[str, str]
    tokens: list[tuple[str, str]]  # (sha256, name)
    tool_version: str
    site_key: SiteKey
    checker: EvidenceChecker
    verifier: VerifyScheduler


def create_app(
    db: Database,
    data_dir: Path,
    cfg: ReviewConfig,
    *,
    tool_version: str = "0",
    env_token: str | None = None,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    verify_interval_s: float = 0.0,
) -> FastAPI:
    """Build the app. `env_token` is an extra API token (the CLI passes $LIVEWATCH_REVIEW_TOKEN).
    `verify_interval_s` > 0 runs the evidence verification pass (review.evidence_checks) on a background
    thread that often, from startup to shutdown."""
    secret = (
        cfg.session_secret.encode("utf-8")
        if cfg.session_secret
        else load_or_create_secret(data_dir / "review-secret")
    )
    tokens = [(t.sha256, t.name) for t in cfg.api_tokens]
    if env_token:
        tokens.append((hash_token(env_token), "api-token"))
    state = _State(
        db=db,
        data_dir=data_dir,
        cfg=cfg,
        signer=SessionSigner(secret, cfg.session_ttl_s, clock, store=DbSessionStore(db)),
        limiter=LoginLimiter(
            cfg.login_max_failures,
            cfg.login_lockout_s,
            cfg.login_lockout_max_s,
            monotonic,
            account_factor=cfg.login_account_factor,
        ),
        users={u.username: u.password_hash for u in cfg.users},
        tokens=tokens,
        tool_version=tool_version,
        site_key=load_or_create_site_key(data_dir),  # signs every evidence package this app exports
        checker=EvidenceChecker(),
        verifier=VerifyScheduler(db, data_dir, verify_interval_s),
    )
    trusted_proxies = parse_networks(cfg.trusted_proxies)
    app = FastAPI(
        title="livewatch review",
        version=tool_version,
        description="Review queue, decisions, statistics and evidence packages for livewatch alerts. "
        "Log in at POST /api/login (cookie + CSRF token) or send `Authorization: Bearer TOKEN`.",
    )
    app.state.review = state
    app.router.on_shutdown.append(state.checker.close)
    app.router.on_startup.append(state.verifier.start)
    app.router.on_shutdown.append(state.verifier.stop)

    @app.middleware("http")
    async def _guard(request: Request, call_next: Callable[[Request], Any]) -> Response:
        if request.method not in SAFE_METHODS and not _same_origin(request):
            return JSONResponse({"detail": "cross-origin request refused"}, status_code=403)
        response: Response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if response.headers.get("content-type", "").startswith(
            "text/html"
        ) and not request.url.path.startswith(("/docs", "/redoc")):
            response.headers.setdefault("Content-Security-Policy", _CSP)
        return response

    def get_session() -> Iterator[Session]:
        s = state.db.session()
        try:
            yield s
        finally:
            s.close()

    def principal(request: Request) -> Principal:
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            digest = hash_token(auth[7:].strip())
            for sha, name in state.tokens:
                if hmac.compare_digest(sha, digest):
                    return Principal(name, "token")
            raise HTTPException(401, "invalid API token", headers={"WWW-Authenticate": "Bearer"})
        data = state.signer.read(request.cookies.get(COOKIE_NAME))
        if data is None or data.username not in state.users:
            raise HTTPException(401, "login required", headers={"WWW-Authenticate": "Bearer"})
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not sent or not hmac.compare_digest(sent, data.csrf):
                raise HTTPException(403, "missing or wrong CSRF token")
        return Principal(data.username, "session", data)

    Who = Annotated[Principal, Depends(principal)]
    Db = Annotated[Session, Depends(get_session)]

    def filters(
        stream: Annotated[
            str | None, Query(description="Stream id; '(none)' for alerts without one.")
        ] = None,
        category: Annotated[str | None, Query(description="Alert category, e.g. false_claim.")] = None,
        severity: Annotated[str | None, Query(description="low, medium, high or critical.")] = None,
        source: Annotated[str | None, Query(description="speech, screen or visual.")] = None,
        status: Annotated[
            Literal["unreviewed", "confirmed", "false_positive", "escalated"] | None,
            Query(description="Current review status."),
        ] = None,
        since: Annotated[
            str | None, Query(description="From this time: ISO date/datetime or epoch seconds.")
        ] = None,
        until: Annotated[
            str | None, Query(description="Before this time (a date includes that whole day).")
        ] = None,
        q: Annotated[
            str | None, Query(max_length=200, description="Text search in text, context, rule, law, id.")
        ] = None,
        broadcast: Annotated[str | None, Query(description="Broadcast id.")] = None,
        rule: Annotated[str | None, Query(description="Rule id.")] = None,
    ) -> AlertFilter:
        tz = ZoneInfo(state.cfg.timezone)
        return AlertFilter(
            stream=stream or None,
            category=category or None,
            severity=severity or None,
            source=source or None,
            status=status,
            since_ts=_parse_time(since, tz, end=False),
            until_ts=_parse_time(until, tz, end=True),
            text=(q or "").strip() or None,
            broadcast=broadcast or None,
            rule=rule or None,
        )

    Filter = Annotated[AlertFilter, Depends(filters)]

    # -- session --------------------------------------------------------------------------------------

    @app.post(
        "/api/login", tags=["auth"], summary="Log in; sets the session cookie and returns the CSRF token"
    )
    def login(body: LoginBody, request: Request, response: Response) -> dict[str, Any]:
        client = client_address(
            request.client.host if request.client else None,
            request.headers.get("x-forwarded-for"),
            trusted_proxies,
        )
        wait = state.limiter.retry_after(client, body.username)
        if wait > 0:
            raise HTTPException(
                429,
                f"too many failed logins; try again in {wait:.0f} s",
                headers={"Retry-After": str(int(wait) + 1)},
            )
        if not verify_password(state.users.get(body.username), body.password):
            wait = state.limiter.failure(client, body.username)
            if wait > 0:
                raise HTTPException(
                    429,
                    f"too many failed logins; try again in {wait:.0f} s",
                    headers={"Retry-After": str(int(wait) + 1)},
                )
            raise HTTPException(401, "wrong user name or password")
        state.limiter.success(client, body.username)
        cookie, data = state.signer.issue(body.username, client)
        response.set_cookie(
            COOKIE_NAME,
            cookie,
            max_age=int(state.cfg.session_ttl_s),
            httponly=True,
            samesite="strict",
            secure=state.cfg.cookie_secure,
            path="/",
        )
        logger.info("review login: %s from %s", body.username, client)
        return {"username": data.username, "csrf_token": data.csrf, "expires_ts": data.expires_ts}

    @app.post("/api/logout", tags=["auth"], summary="Log out; the session cookie stops working")
    def logout(who: Who, response: Response) -> dict[str, Any]:
        if who.session is not None:
            state.signer.revoke(who.session)
        response.delete_cookie(COOKIE_NAME, path="/")
        return {"ok": True}

    @app.get("/api/session", tags=["auth"], summary="Who is logged in, and the CSRF token for this session")
    def session_info(who: Who) -> dict[str, Any]:
        return {
            "username": who.name,
            "via": who.via,
            "csrf_token": who.session.csrf if who.session else None,
            "timezone": state.cfg.timezone,
            "page_size": state.cfg.page_size,
            "decisions": [*DECISIONS, NOTE],
            "undo_window_s": UNDO_WINDOW_S,
        }

    # -- alerts ---------------------------------------------------------------------------------------

    @app.get(
        "/api/alerts", tags=["alerts"], summary="The review queue: alerts newest first, with facet counts"
    )
    def list_alerts(
        who: Who,
        db: Db,
        f: Filter,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[
            str | None,
            Query(max_length=600, description="The previous page's next_cursor: the page after it. "
                  "Pages after the first omit total and counts (null)."),
        ] = None,
        offset: Annotated[
            int, Query(ge=0, description="Deprecated: rows to skip (reads them all); use cursor.")
        ] = 0,
    ) -> dict[str, Any]:
        try:
            page = queue(db, f, limit=limit, offset=offset, cursor=cursor, with_counts=not cursor)
        except BadCursor as e:
            raise HTTPException(422, str(e)) from None
        # each row's evidence state as the last verification pass (or Verify) stored it; null: never checked
        checked = queue_states(db, [it["alert_id"] for it in page.items])
        for it in page.items:
            st = checked.get(it["alert_id"])
            it["evidence_state"] = st[0] if st else None
            it["evidence_checked_ts"] = st[1] if st else None
        return {
            "total": page.total,
            "limit": limit,
            "offset": offset,
            "items": page.items,
            "counts": page.counts,
            "next_cursor": page.next_cursor,
        }

    @app.get(
        "/api/alerts/{alert_id}", tags=["alerts"], summary="One alert with clip, transcript and decisions"
    )
    def get_alert(alert_id: str, who: Who, db: Db) -> dict[str, Any]:
        detail = alert_detail(db, alert_id, data_dir=state.data_dir, checker=state.checker)
        if detail is None:
            raise HTTPException(404, "no such alert")
        return detail

    @app.get(
        "/api/alerts/{alert_id}/files/{name}",
        tags=["evidence"],
        summary="An evidence file of an alert (by its listed name; range requests supported)",
        response_class=FileResponse,
    )
    def get_file(alert_id: str, name: str, who: Who, db: Db) -> FileResponse:
        path = evidence_file_path(db, alert_id, name, state.data_dir)
        if path is None:
            raise HTTPException(404, "no such evidence file")
        return FileResponse(
            path,
            media_type=media_type(path.name),
            content_disposition_type="inline",
            filename=path.name,
            headers={"Cache-Control": "private, max-age=3600"},
        )

    @app.get("/api/alerts/{alert_id}/decisions", tags=["decisions"], summary="The audit trail of an alert")
    def get_decisions(alert_id: str, who: Who, db: Db) -> list[dict[str, Any]]:
        if db.get(AlertRow, alert_id) is None:
            raise HTTPException(404, "no such alert")
        return [decision_dict(d) for d in history(db, alert_id)]

    @app.post(
        "/api/alerts/{alert_id}/decisions",
        tags=["decisions"],
        status_code=201,
        summary="Append a decision (confirmed, false_positive, escalated) or a note",
    )
    def post_decision(alert_id: str, body: DecisionBody, who: Who, db: Db) -> dict[str, Any]:
        try:
            d = add_decision(db, alert_id, body.decision, reviewer=who.name, note=body.note, clock=clock)
        except KeyError:
            raise HTTPException(404, "no such alert") from None
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        logger.info("decision %s on %s by %s", d.decision, alert_id, who.name)
        detail = alert_detail(db, alert_id, data_dir=state.data_dir, checker=state.checker) or {}
        return {
            "decision": decision_dict(d),
            "status": detail.get("status"),
            "decisions": detail.get("decisions"),
        }

    @app.post(
        "/api/alerts/{alert_id}/decisions/{decision_id}/undo",
        tags=["decisions"],
        status_code=201,
        summary="Take back your own latest decision within a few seconds (appends an undo row)",
        description=f"Allowed for {UNDO_WINDOW_S:.0f} s after the decision, to the reviewer who made it, "
        "while no later decision exists. The decision stays in the audit trail; a new row (with "
        "`undoes_id`) restores the status the alert had before. 409 with the reason when refused.",
    )
    def post_undo(alert_id: str, decision_id: int, who: Who, db: Db) -> dict[str, Any]:
        try:
            d = undo_decision(db, alert_id, decision_id, reviewer=who.name, clock=clock)
        except KeyError:
            raise HTTPException(404, "no such decision on this alert") from None
        except UndoRefused as e:
            raise HTTPException(409, str(e)) from None
        logger.info("decision %s on %s undone by %s", decision_id, alert_id, who.name)
        detail = alert_detail(db, alert_id, data_dir=state.data_dir, checker=state.checker) or {}
        return {
            "decision": decision_dict(d),
            "status": detail.get("status"),
            "decisions": detail.get("decisions"),
        }

    @app.get(
        "/api/alerts/{alert_id}/verify",
        tags=["evidence"],
        summary="Hash the evidence files on disk again and compare with the recorded hashes",
    )
    def verify_alert(alert_id: str, who: Who, db: Db) -> dict[str, Any]:
        a = db.get(AlertRow, alert_id)
        if a is None:
            raise HTTPException(404, "no such alert")
        recorded = {
            r.name: r.sha256 for r in db.query(EvidenceFileRow).filter(EvidenceFileRow.alert_id == alert_id)
        }
        states = file_states(db, alert_id, data_dir=state.data_dir, checker=state.checker, full=True)
        signature = None
        if states:
            signature = manifest_signature_state(
                evidence_file_path(db, alert_id, "manifest.json", state.data_dir), state.site_key.public_raw
            )
            record_checks(
                db,
                alert_id,
                [(st.name, st.state, st.actual_sha256) for st in states],
                max(st.checked_ts or clock() for st in states),
                signature,
            )
            db.commit()
        out = [
            {
                "name": st.name,
                "recorded_sha256": recorded.get(st.name),
                "actual_sha256": st.actual_sha256,
                "status": st.state,
                "checked_ts": st.checked_ts,
            }
            for st in states
        ]
        return {
            "ok": bool(out) and all(x["status"] == "ok" for x in out) and signature != "invalid",
            "files": out,
            "manifest_signature": signature,
        }

    @app.get(
        "/api/alerts/{alert_id}/package",
        tags=["evidence"],
        response_class=FileResponse,
        summary="Download the evidence package (zip with clip, snapshot, transcript, manifest, decisions)",
    )
    def get_package(alert_id: str, who: Who, db: Db) -> FileResponse:
        tmpdir = Path(tempfile.mkdtemp(prefix="livewatch-package-"))
        dest = tmpdir / f"livewatch-evidence-{alert_id}.zip"
        try:
            result = export_package(
                db,
                alert_id,
                dest,
                exported_by=who.name,
                tool_version=state.tool_version,
                timezone=state.cfg.timezone,
                signing_key=state.site_key,
                data_dir=state.data_dir,
            )
        except KeyError:
            _rmtree(tmpdir)
            raise HTTPException(404, "no such alert") from None
        except PackageNotAvailable as e:
            _rmtree(tmpdir)
            raise HTTPException(409, str(e)) from None
        except EvidenceIntegrityError as e:
            _rmtree(tmpdir)
            logger.error("evidence of %s failed its hash check: %s", alert_id, e)
            raise HTTPException(409, f"evidence no longer matches its recorded hashes: {e}") from None
        except BaseException:
            _rmtree(tmpdir)
            raise
        logger.info(
            "evidence package of %s exported by %s (manifest %s)", alert_id, who.name, result.manifest_sha256
        )
        return FileResponse(
            dest,
            media_type="application/zip",
            filename=dest.name,
            headers={"X-Manifest-SHA256": result.manifest_sha256, "X-Zip-SHA256": result.zip_sha256},
            background=BackgroundTask(_rmtree, tmpdir),
        )

    # -- statistics and ledger ------------------------------------------------------------------------

    @app.get(
        "/api/stats",
        tags=["statistics"],
        summary="Alerts and confirmed violations per day/category/stream/rule",
    )
    def get_stats(who: Who, db: Db, f: Filter) -> dict[str, Any]:
        return statistics(db, f, state.cfg.timezone).as_dict()

    @app.get(
        "/api/stats/chart.svg",
        tags=["statistics"],
        summary="The statistics as one SVG chart",
        response_class=Response,
    )
    def get_chart(who: Who, db: Db, f: Filter) -> Response:
        svg = charts.statistics_svg(statistics(db, f, state.cfg.timezone))
        return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})

    @app.get("/api/precision", tags=["statistics"], summary="Per-rule precision from reviewers' decisions")
    def get_precision(who: Who, db: Db, f: Filter) -> list[dict[str, Any]]:
        return [p.as_dict() for p in rule_precision(db, since_ts=f.since_ts, until_ts=f.until_ts).values()]

    @app.get(
        "/api/ledger.{fmt}",
        tags=["statistics"],
        summary="The ledger (台账) for a period as CSV or XLSX",
        response_class=Response,
    )
    def get_ledger(fmt: Literal["csv", "xlsx"], who: Who, f: Filter) -> Response:
        # streamed: the rows are read through one streamed query by a session of its own, which lives as
        # long as the response body (not the request's), so a year's ledger never sits in memory
        stamp = _period_name(f, state.cfg.timezone)
        headers = {"Content-Disposition": f'attachment; filename="livewatch-ledger-{stamp}.{fmt}"'}
        if fmt == "csv":
            return StreamingResponse(_csv_body(f), media_type="text/csv; charset=utf-8", headers=headers)
        tmpdir = Path(tempfile.mkdtemp(prefix="livewatch-ledger-"))
        dest = tmpdir / f"livewatch-ledger-{stamp}.xlsx"
        try:
            with state.db.session() as s:
                stats = statistics(s, f, state.cfg.timezone)
                ledger.write_ledger_xlsx(
                    iter_ledger_values(s, f, state.cfg.timezone), stats, f"livewatch 台账 Ledger {stamp}", dest
                )
        except BaseException:
            _rmtree(tmpdir)
            raise
        return FileResponse(
            dest,
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers=headers,
            background=BackgroundTask(_rmtree, tmpdir),
        )

    def _csv_body(f: AlertFilter) -> Iterator[bytes]:
        with state.db.session() as s:
            yield from ledger.iter_ledger_csv(iter_ledger_values(s, f, state.cfg.timezone))

    # -- monitoring -----------------------------------------------------------------------------------

    def _evidence_metrics() -> str:
        with state.db.session() as s:
            return evidence_metrics(s)

    @app.get(
        "/api/streams",
        tags=["monitoring"],
        summary="Every stream: its state and the process (monitor instance or bus ingest worker, with its "
        "host) recording it, gaps, ASR lag and alerts today",
    )
    def get_streams(who: Who) -> dict[str, Any]:
        now = clock()
        running, rows = stream_statuses(state.db, state.data_dir, now)
        return {"running": running, "streams": [asdict(r) for r in rows]}

    @app.get(
        "/metrics",
        tags=["monitoring"],
        summary="The live monitor per stream in Prometheus text format (state, uptime, reconnects, ASR lag, "
        "alerts today); scrape with a bearer token",
        response_class=Response,
    )
    def get_metrics(who: Who) -> Response:
        now = clock()
        running, rows = stream_statuses(state.db, state.data_dir, now)
        return Response(
            metrics_text(
                running,
                rows,
                rules_status(state.data_dir, now),
                verify_status(state.data_dir, now),
                deferred_status(state.data_dir, now),
                db_write_status(state.data_dir, now),
            )
            + _evidence_metrics(),
            media_type="text/plain; version=0.0.4; charset=utf-8",
            headers={"Cache-Control": "no-store"},
        )

    # -- the page -------------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html",
            media_type="text/html; charset=utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:  # same-origin GETs and non-browser clients send none
        return True
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1].rstrip("/") == host


def _parse_time(value: str | None, tz: ZoneInfo, *, end: bool) -> float | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            start = datetime(d.year, d.month, d.day, tzinfo=tz)
            return (start + timedelta(days=1) if end else start).timestamp()
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(422, f"'{value}' is not a date, an ISO time or epoch seconds") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.timestamp()


def _period_name(f: AlertFilter, timezone: str) -> str:
    tz = ZoneInfo(timezone)

    def day(ts: float | None) -> str:
        return "" if ts is None else datetime.fromtimestamp(ts, tz).strftime("%Y%m%d")

    a, b = day(f.since_ts), day(None if f.until_ts is None else f.until_ts - 1)
    return f"{a or 'start'}-{b or 'now'}"


def _rmtree(path: Path) -> None:
    for p in sorted(path.rglob("*"), reverse=True):
        if p.is_dir():
            p.rmdir()
        else:
            p.unlink(missing_ok=True)
    path.rmdir()


def env_token() -> str | None:
    return os.environ.get("LIVEWATCH_REVIEW_TOKEN") or None
