"""What `livewatch status` and /metrics show: per stream state, uptime, reconnects, ASR lag, alerts today,
the rule holders, and the monitor's evidence verification pass.

A running monitor rewrites `<data_dir>/monitor/status.json` every second (atomic rename); the rest
comes from the database, so the status of a stopped monitor still shows its history. Read-only:
safe from any process while a monitor runs.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.db import Database
from store.models import AlertRow, Broadcast, BroadcastGap, MonitorLease, Stream, UtteranceRow

__all__ = [
    "LineDelay",
    "StreamStatus",
    "db_write_problems",
    "db_write_status",
    "deferred_problems",
    "deferred_status",
    "line_delay",
    "metrics_text",
    "read_status",
    "rules_status",
    "stream_statuses",
    "verify_problems",
    "verify_status",
]

STATUS_FILE = Path("monitor") / "status.json"
STALE_S = 10.0
LINE_DELAY_LINES = 20  # the newest analysed lines of a live broadcast its line delay is the median over


@dataclass(frozen=True, slots=True)
class StreamStatus:
    stream_id: str
    name: str
    state: str  # recording | reconnecting | offline | connecting | finished | stopped | not running
    detail: str
    broadcast_id: str | None
    uptime_s: float | None  # of the current broadcast
    reconnects_today: int
    gaps_today: int
    asr_lag_s: float | None
    max_asr_lag_s: float | None
    lagging: bool
    alerts_today: int
    last_alert_ts: float | None
    # the process recording the stream's current broadcast (a monitor instance, or a bus ingest worker),
    # from the broadcast's owner and that owner's lease row (its host); None when nothing is live
    served_by: str | None = None
    server_alive: bool | None = None  # its lease unexpired
    line_delay: LineDelay | None = None  # where the live broadcast's newest lines spent their time


@dataclass(frozen=True, slots=True)
class LineDelay:
    """Medians, in seconds, over the newest `lines` analysed speech lines of a live broadcast, from the hop
    stamps each line keeps (asr/timing.py): on the bus, the audio's trip from the ingest box to the ASR
    worker (`bus_s`: the chunk stored on the bus → fetched; None in one process); the ASR (`asr_s`: the
    line's audio at the ASR worker → the line committed: waiting for passes, decoding, agreement); the
    analysis (`analysis_s`: committed → its analysis committed: storing, the bus's trip, rules, the
    alert's transaction); `total_s` from the first of these stamps to the last. The way in before (HLS,
    recording) is not in it: the broadcast's clock says when a moment was live only to a second or two."""

    lines: int
    bus_s: float | None
    asr_s: float | None
    analysis_s: float | None
    total_s: float | None


def read_status(data_dir: Path) -> dict[str, Any] | None:
    path = Path(data_dir) / STATUS_FILE
    for attempt in range(3):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            # on a full disk the monitor rewrites the file in place: a read may catch it half written
            if attempt == 2:
                return None
            time.sleep(0.05)
            continue
        return data if isinstance(data, dict) else None
    return None


def monitor_running(status: dict[str, Any] | None, now_ts: float) -> bool:
    return bool(status and status.get("running") and now_ts - float(status.get("updated_ts", 0)) < STALE_S)


def local_midnight_ts(now_ts: float) -> float:
    local = datetime.fromtimestamp(now_ts, UTC).astimezone()
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def stream_statuses(db: Database, data_dir: Path, now_ts: float) -> tuple[bool, list[StreamStatus]]:
    """(monitor running?, one row per stream the database or the running monitor knows)."""
    status = read_status(data_dir)
    running = monitor_running(status, now_ts)
    live = (status or {}).get("streams", {}) if running else {}
    midnight = local_midnight_ts(now_ts)
    with db.session() as s:
        names = {r.id: r.name for r in s.scalars(select(Stream))}
        started = dict(
            s.execute(
                select(Broadcast.stream_id, func.count())
                .where(Broadcast.kind == "live", Broadcast.started_ts >= midnight)
                .group_by(Broadcast.stream_id)
            ).all()
        )
        gaps = dict(
            s.execute(
                select(BroadcastGap.stream_id, func.count())
                .where(BroadcastGap.start_ts >= midnight)
                .group_by(BroadcastGap.stream_id)
            ).all()
        )
        alerts = {
            sid: (n, last)
            for sid, n, last in s.execute(
                select(AlertRow.stream_id, func.count(), func.max(AlertRow.created_ts))
                .where(AlertRow.created_ts >= midnight)
                .group_by(AlertRow.stream_id)
            ).all()
        }
        current = {
            b.stream_id: b
            for b in s.scalars(select(Broadcast).where(Broadcast.kind == "live", Broadcast.status == "live"))
        }
        delays = {b.id: line_delay(s, b.id) for b in current.values()}
        owners = {b.owner for b in current.values() if b.owner}
        lease_rows = {
            r.owner: r for r in s.scalars(select(MonitorLease).where(MonitorLease.owner.in_(sorted(owners))))
        }
    rows = []
    for sid in sorted(set(names) | set(live)):
        info = live.get(sid, {})
        b = current.get(sid)
        lease = lease_rows.get(b.owner) if b is not None and b.owner else None
        alive = None if lease is None else lease.expires_ts > now_ts
        served = None if b is None or not b.owner else (f"{b.owner}@{lease.host}" if lease else b.owner)
        if running and (sid in live or not (b is not None and alive)):
            state, detail = info.get("state", "unknown"), info.get("detail", "")
            bid = info.get("broadcast_id")
            since = info.get("broadcast_started_ts")
        elif b is not None and alive:  # recorded by another process (a bus ingest worker, another monitor)
            state, detail, bid, since = "recording", f"by {served}", b.id, b.started_ts
        elif b is not None and lease is not None:
            state, detail, bid, since = "not running", f"{served} stopped renewing its lease", None, None
        else:
            state, detail, bid, since = "not running", "", None, None
        n_alerts, last = alerts.get(sid, (0, None))
        rows.append(
            StreamStatus(
                stream_id=sid,
                name=info.get("name") or names.get(sid, sid),
                state=state,
                detail=detail,
                broadcast_id=bid or (b.id if b and running else None),
                uptime_s=None if since is None else max(0.0, now_ts - since),
                reconnects_today=max(0, int(started.get(sid, 0)) - 1),
                gaps_today=int(gaps.get(sid, 0)),
                asr_lag_s=info.get("asr_lag_s"),
                max_asr_lag_s=info.get("max_asr_lag_s"),
                lagging=bool(info.get("lagging")),
                alerts_today=int(n_alerts),
                last_alert_ts=last,
                served_by=served,
                server_alive=alive,
                line_delay=delays.get(b.id) if b is not None else None,
            )
        )
    return running, rows


def line_delay(s: Session, broadcast_id: str) -> LineDelay | None:
    """The line delay of a broadcast (see `LineDelay`); None before a stamped line was analysed."""
    rows = s.scalars(
        select(UtteranceRow.meta)
        .where(
            UtteranceRow.broadcast_id == broadcast_id,
            UtteranceRow.source == "speech",
            UtteranceRow.analyzed.is_(True),
        )
        .order_by(UtteranceRow.idx.desc())
        .limit(LINE_DELAY_LINES)
    ).all()
    hops: dict[str, list[float]] = {"bus": [], "asr": [], "analysis": [], "total": []}
    for meta in rows:
        m = {k: float(v) for k, v in (meta or {}).items() if isinstance(v, (int, float))}
        first = m.get("sent_ts", m.get("audio_ts"))
        for key, a, b in (
            ("bus", m.get("sent_ts"), m.get("audio_ts")),
            ("asr", m.get("audio_ts"), m.get("committed_ts")),
            ("analysis", m.get("committed_ts"), m.get("analyzed_ts")),
            ("total", first, m.get("analyzed_ts")),
        ):
            if a is not None and b is not None:
                hops[key].append(b - a)
    if not hops["analysis"]:
        return None

    def med(v: list[float]) -> float | None:
        return round(statistics.median(v), 2) if v else None

    return LineDelay(
        len(hops["analysis"]),
        med(hops["bus"]),
        med(hops["asr"]),
        med(hops["analysis"]),
        med(hops["total"]),
    )


def rules_status(data_dir: Path, now_ts: float) -> dict[str, Any] | None:
    """The running monitor's rule holders (version, reload failures) and over-budget lines, or None."""
    status = read_status(data_dir)
    if not monitor_running(status, now_ts):
        return None
    rules = (status or {}).get("rules")
    return rules if isinstance(rules, dict) else None


def rules_problems(rules: dict[str, Any] | None) -> list[str]:
    """Lines for a human: refused reloads still in effect, and lines matched past the time budget."""
    out: list[str] = []
    for h in (rules or {}).get("holders", []):
        if not h.get("ok", True):
            when = h.get("last_failure_ts")
            at = (
                ""
                if when is None
                else datetime.fromtimestamp(when, UTC).astimezone().strftime(" at %Y-%m-%d %H:%M:%S")
            )
            out.append(
                f"{h.get('last_failure') or 'rules reload failed'}{at} ({h.get('reload_failures', 0)} "
                f"failure(s)); still running rule set {h.get('version')}"
            )
    m = (rules or {}).get("matching") or {}
    if m.get("lines_over_budget"):
        out.append(
            f"{m['lines_over_budget']} line(s) ran past the matching time budget "
            f"({m.get('rules_skipped', 0)} rule evaluations skipped); last: {m.get('last_over_budget_text')!r}"
        )
    return out


def verify_status(data_dir: Path, now_ts: float) -> dict[str, Any] | None:
    """The running monitor's evidence verification schedule and latest pass (review.evidence_checks
    `VerifyScheduler.status`), or None when no monitor runs."""
    status = read_status(data_dir)
    if not monitor_running(status, now_ts):
        return None
    v = (status or {}).get("evidence_verify")
    return v if isinstance(v, dict) else None


def deferred_status(data_dir: Path, now_ts: float) -> dict[str, Any] | None:
    """The running monitor's evidence waiting for disk space (alerts, the error saying what and where),
    or None (no monitor, or nothing waiting)."""
    status = read_status(data_dir)
    if not monitor_running(status, now_ts):
        return None
    d = (status or {}).get("evidence_deferred")
    return d if isinstance(d, dict) else None


def deferred_problems(deferred: dict[str, Any] | None) -> list[str]:
    if not deferred:
        return []
    return [
        f"evidence of {deferred.get('alerts', 0)} alert(s) waiting for disk space: {deferred.get('error')}"
    ]


def db_write_status(data_dir: Path, now_ts: float) -> dict[str, Any] | None:
    """The running monitor's database writer (store.writer.DbWriter.status: backlog, waiting for disk
    space, queue full, failed writes), or None when no monitor runs."""
    status = read_status(data_dir)
    if not monitor_running(status, now_ts):
        return None
    d = (status or {}).get("db_writer")
    return d if isinstance(d, dict) else None


def db_write_problems(w: dict[str, Any] | None) -> list[str]:
    """Lines for a human: database writes waiting for disk space, a full writer queue, failed writes."""
    if not w:
        return []
    out = []
    space = w.get("waiting_for_space")
    if isinstance(space, dict):
        out.append(
            f"database writes waiting for disk space since{_when(space.get('since_ts'))}: {space.get('error')}"
        )
    full = w.get("queue_full")
    if isinstance(full, dict):
        out.append(f"{full.get('message')} (since{_when(full.get('since_ts'))})")
    last = w.get("last_failure")
    if int(w.get("failed", 0)) and isinstance(last, dict):
        out.append(
            f"{w['failed']} database write(s) failed and were not retried; last{_when(last.get('ts'))}: "
            f"{last.get('job')}: {last.get('error')}"
        )
    return out


def _db_write_metrics(w: dict[str, Any] | None) -> list[str]:
    w = w or {}
    return [
        "# HELP livewatch_monitor_db_waiting_for_space 1 while the monitor's database writes wait for disk "
        "space (held in order, retried).",
        "# TYPE livewatch_monitor_db_waiting_for_space gauge",
        f"livewatch_monitor_db_waiting_for_space {int(isinstance(w.get('waiting_for_space'), dict))}",
        "# HELP livewatch_monitor_db_writes_queued Database writes queued or held in the monitor.",
        "# TYPE livewatch_monitor_db_writes_queued gauge",
        f"livewatch_monitor_db_writes_queued {int(w.get('backlog', 0))}",
        "# HELP livewatch_monitor_db_queue_full 1 while the monitor's database writer queue is full "
        "(its workers wait).",
        "# TYPE livewatch_monitor_db_queue_full gauge",
        f"livewatch_monitor_db_queue_full {int(isinstance(w.get('queue_full'), dict))}",
        "# HELP livewatch_monitor_db_disk_full_episodes_total Times the database's disk filled up.",
        "# TYPE livewatch_monitor_db_disk_full_episodes_total counter",
        f"livewatch_monitor_db_disk_full_episodes_total {int(w.get('space_episodes', 0))}",
        "# HELP livewatch_monitor_db_write_failures_total Database writes that failed (not disk space).",
        "# TYPE livewatch_monitor_db_write_failures_total counter",
        f"livewatch_monitor_db_write_failures_total {int(w.get('failed', 0))}",
    ]


def _when(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return ""
    return datetime.fromtimestamp(ts, UTC).astimezone().strftime(" at %Y-%m-%d %H:%M:%S")


def verify_problems(verify: dict[str, Any] | None) -> list[str]:
    """Lines for a human: evidence files the monitor's last verification pass found missing or changed,
    manifests whose signature no longer holds, a pass that failed."""
    out: list[str] = []
    if not verify:
        return out
    if verify.get("error"):
        out.append(f"evidence verification pass failed{_when(verify.get('error_ts'))}: {verify['error']}")
    last = verify.get("last") or {}
    states = last.get("states") or {}
    invalid = int((last.get("signatures") or {}).get("invalid", 0))
    if last.get("bad") or invalid:
        parts = [f"{states[k]} {k}" for k in ("missing", "changed") if states.get(k)]
        if invalid:
            parts.append(f"{invalid} manifest signature(s) invalid")
        listed = last.get("bad_files") or []
        example = (
            f"; e.g. {listed[0]['alert_id']}/{listed[0]['name']} {listed[0]['state']}"
            if listed and isinstance(listed[0], dict)
            else ""
        )
        out.append(
            f"evidence not as captured{_when(last.get('finished_ts'))}: {', '.join(parts)} of "
            f"{last.get('files', 0)} file(s){example} (`livewatch evidence verify-store` for the list)"
        )
    return out


def _verify_metrics(verify: dict[str, Any]) -> list[str]:
    last = verify.get("last") or {}
    states = last.get("states") or {}
    out = [
        "# HELP livewatch_monitor_evidence_verify_passes_total Evidence verification passes the monitor ran.",
        "# TYPE livewatch_monitor_evidence_verify_passes_total counter",
        f"livewatch_monitor_evidence_verify_passes_total {int(verify.get('passes', 0))}",
        "# HELP livewatch_monitor_evidence_verify_ok 1 when the monitor's last verification pass found every "
        "evidence file as captured (0 also when the pass failed).",
        "# TYPE livewatch_monitor_evidence_verify_ok gauge",
        f"livewatch_monitor_evidence_verify_ok {int(bool(last.get('ok')) and not verify.get('error'))}",
        "# HELP livewatch_monitor_evidence_verify_last_pass_timestamp_seconds When the monitor's last "
        "verification pass finished (0: none yet).",
        "# TYPE livewatch_monitor_evidence_verify_last_pass_timestamp_seconds gauge",
        f"livewatch_monitor_evidence_verify_last_pass_timestamp_seconds {float(last.get('finished_ts') or 0.0)}",
        "# HELP livewatch_monitor_evidence_verify_files Evidence files by state in the monitor's last pass.",
        "# TYPE livewatch_monitor_evidence_verify_files gauge",
    ]
    for k in ("ok", "missing", "changed"):
        out.append(f'livewatch_monitor_evidence_verify_files{{state="{k}"}} {int(states.get(k, 0))}')
    return out


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _rules_metrics(rules: dict[str, Any] | None) -> list[str]:
    holders = (rules or {}).get("holders", [])
    m = (rules or {}).get("matching") or {}
    out = [
        "# HELP livewatch_rules_reload_ok 0 while the last rules reload was refused (the previous set runs).",
        "# TYPE livewatch_rules_reload_ok gauge",
    ]
    for h in holders:
        out.append(
            f'livewatch_rules_reload_ok{{dirs="{_esc(",".join(h.get("dirs", [])))}"}} {int(bool(h.get("ok", True)))}'
        )
    out += [
        "# HELP livewatch_rules_reload_failures_total Rules reloads refused (invalid, hostile or timed out).",
        "# TYPE livewatch_rules_reload_failures_total counter",
    ]
    for h in holders:
        out.append(
            f'livewatch_rules_reload_failures_total{{dirs="{_esc(",".join(h.get("dirs", [])))}"}} '
            f"{int(h.get('reload_failures', 0))}"
        )
    out += [
        "# HELP livewatch_rules_last_reload_failure_timestamp_seconds When a rules reload was last refused.",
        "# TYPE livewatch_rules_last_reload_failure_timestamp_seconds gauge",
    ]
    for h in holders:
        if h.get("last_failure_ts") is not None:
            out.append(
                f'livewatch_rules_last_reload_failure_timestamp_seconds{{dirs="{_esc(",".join(h.get("dirs", [])))}"}} '
                f"{float(h['last_failure_ts']):.3f}"
            )
    out += [
        "# HELP livewatch_rules_lines_over_budget_total Lines whose matching ran past the time budget.",
        "# TYPE livewatch_rules_lines_over_budget_total counter",
        f"livewatch_rules_lines_over_budget_total {int(m.get('lines_over_budget', 0))}",
    ]
    return out


def metrics_text(
    running: bool,
    rows: list[StreamStatus],
    rules: dict[str, Any] | None = None,
    verify: dict[str, Any] | None = None,
    deferred: dict[str, Any] | None = None,
    db_write: dict[str, Any] | None = None,
) -> str:
    """Prometheus text exposition (version 0.0.4); `rules` from `rules_status`, `verify` from
    `verify_status`, `deferred` from `deferred_status` and `db_write` from `db_write_status` (a running
    monitor)."""
    out = [
        "# HELP livewatch_monitor_up Whether a monitor process is running and updating its status.",
        "# TYPE livewatch_monitor_up gauge",
        f"livewatch_monitor_up {int(running)}",
    ]
    series = [
        (
            "livewatch_stream_recording",
            "gauge",
            "1 while the stream is being recorded.",
            lambda r: float(r.state == "recording"),
        ),
        ("livewatch_stream_uptime_seconds", "gauge", "Age of the current broadcast.", lambda r: r.uptime_s),
        (
            "livewatch_stream_reconnects_today",
            "gauge",
            "Broadcasts started today after the first.",
            lambda r: r.reconnects_today,
        ),
        ("livewatch_stream_gaps_today", "gauge", "Recording gaps opened today.", lambda r: r.gaps_today),
        (
            "livewatch_stream_asr_lag_seconds",
            "gauge",
            "How far ASR is behind the live edge.",
            lambda r: r.asr_lag_s,
        ),
        (
            "livewatch_stream_asr_lag_max_seconds",
            "gauge",
            "Largest ASR lag since the monitor started.",
            lambda r: r.max_asr_lag_s,
        ),
        (
            "livewatch_stream_line_delay_seconds",
            "gauge",
            "Median seconds from a line's audio reaching the ASR worker (on the bus: leaving the ingest box) "
            "to its analysis stored, over the live broadcast's newest lines.",
            lambda r: r.line_delay.total_s if r.line_delay is not None else None,
        ),
        ("livewatch_stream_alerts_today", "gauge", "Alerts raised today.", lambda r: r.alerts_today),
    ]
    for name, kind, help_text, get in series:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for r in rows:
            v = get(r)
            if v is not None:
                out.append(f'{name}{{stream="{_esc(r.stream_id)}"}} {float(v):g}')
    served = [r for r in rows if r.served_by]
    if served:
        out += [
            "# HELP livewatch_stream_served_by The process recording the stream's live broadcast (1 while "
            "its lease is held).",
            "# TYPE livewatch_stream_served_by gauge",
        ]
        out += [
            f'livewatch_stream_served_by{{stream="{_esc(r.stream_id)}",by="{_esc(r.served_by or "")}"}} '
            f"{int(bool(r.server_alive))}"
            for r in served
        ]
    if rules is not None:
        out += _rules_metrics(rules)
    if verify is not None:
        out += _verify_metrics(verify)
    if running:
        out += [
            "# HELP livewatch_monitor_evidence_waiting_for_space Alerts whose evidence waits for disk space.",
            "# TYPE livewatch_monitor_evidence_waiting_for_space gauge",
            f"livewatch_monitor_evidence_waiting_for_space {int((deferred or {}).get('alerts', 0))}",
        ]
        out += _db_write_metrics(db_write)
    return "\n".join(out) + "\n"


def as_json(
    running: bool,
    rows: list[StreamStatus],
    rules: dict[str, Any] | None = None,
    verify: dict[str, Any] | None = None,
    deferred: dict[str, Any] | None = None,
    db_write: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "running": running,
        "streams": [asdict(r) for r in rows],
        "rules": rules,
        "evidence_verify": verify,
        "evidence_deferred": deferred,
        "db_writer": db_write,
        "problems": rules_problems(rules)
        + verify_problems(verify)
        + deferred_problems(deferred)
        + db_write_problems(db_write),
    }
