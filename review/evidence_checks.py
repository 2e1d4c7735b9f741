"""The verification pass over the evidence store, and its stored results (`evidence_checks`).

`verify_store` re-hashes every evidence file the database lists (alerts whose evidence was written)
against the SHA-256 recorded at capture and stores each file's state: `ok`, `changed` (size or hash
differs) or `missing` (not on disk), with the hash seen and when. The capture manifest's Ed25519
signature (alerts.signing) is checked against the data directory's site key and stored with the
manifest's row: `valid`, `untrusted` (valid, but made by another key), `invalid` (changed after
signing), `unsigned` (an older manifest written before manifests were signed; not a failure).

The pass runs from `livewatch evidence verify-store` and, every `evidence.verify_interval_s`, on a
background thread of the live monitor and of the review app (`VerifyScheduler`); a reviewer's Verify stores its result the
same way (`record_checks`). The queue, the alert page and `/metrics` read the stored rows.

Concurrency: the pass uses its own sessions, one commit per alert (a row per file, replaced); it reads
files only. One pass at a time per scheduler; two processes running passes at once only overwrite each
other's rows with equally fresh results.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from alerts.evidence import sha256_file
from alerts.signing import check_signature, site_public_key
from store.models import AlertRow, EvidenceCheck, EvidenceFileRow

__all__ = [
    "PassResult",
    "StoredCheck",
    "VerifyScheduler",
    "evidence_metrics",
    "manifest_signature_state",
    "queue_states",
    "record_checks",
    "stored_checks",
    "verify_store",
]

logger = logging.getLogger(__name__)

STATES = ("ok", "missing", "changed")
_SEVERITY = {"missing": 3, "changed": 2, "unverified": 1, "ok": 0}


@dataclass(frozen=True, slots=True)
class StoredCheck:
    name: str
    state: str
    checked_ts: float
    sha256_seen: str | None
    signature: str | None = None


@dataclass(slots=True)
class PassResult:
    started_ts: float
    finished_ts: float = 0.0
    alerts: int = 0
    files: int = 0
    states: Counter[str] = field(default_factory=Counter)
    signatures: Counter[str] = field(default_factory=Counter)
    bad: list[tuple[str, str, str]] = field(default_factory=list)  # (alert_id, name, state)

    @property
    def ok(self) -> bool:
        return not self.bad and not self.signatures.get("invalid")


def stored_checks(session: Session, alert_ids: Sequence[str]) -> dict[str, dict[str, StoredCheck]]:
    """alert id → file name → its latest stored check (alerts never checked are absent)."""
    out: dict[str, dict[str, StoredCheck]] = {}
    ids = list(dict.fromkeys(alert_ids))
    for i in range(0, len(ids), 500):
        rows = session.scalars(select(EvidenceCheck).where(EvidenceCheck.alert_id.in_(ids[i : i + 500])))
        for r in rows:
            out.setdefault(r.alert_id, {})[r.name] = StoredCheck(
                r.name, r.state, r.checked_ts, r.sha256_seen, r.signature
            )
    return out


def queue_states(session: Session, alert_ids: Sequence[str]) -> dict[str, tuple[str, float]]:
    """alert id → (the worst stored state of its files, when the oldest of them was checked)."""
    out: dict[str, tuple[str, float]] = {}
    for alert_id, checks in stored_checks(session, alert_ids).items():
        worst = max((c.state for c in checks.values()), key=lambda s: _SEVERITY.get(s, 0), default="ok")
        out[alert_id] = (worst, min(c.checked_ts for c in checks.values()))
    return out


def record_checks(
    session: Session,
    alert_id: str,
    checks: Iterable[tuple[str, str, str | None]],
    checked_ts: float,
    signature: str | None = None,
) -> None:
    """Replace an alert's stored checks by `checks` ((name, state, sha256 seen)); `signature` goes on the
    manifest's row. The caller commits."""
    session.execute(delete(EvidenceCheck).where(EvidenceCheck.alert_id == alert_id))
    for name, state, seen in checks:
        session.add(
            EvidenceCheck(
                alert_id=alert_id,
                name=name,
                state=state,
                checked_ts=checked_ts,
                sha256_seen=seen,
                signature=signature if name == "manifest.json" else None,
            )
        )


def manifest_signature_state(manifest_path: Path | None, trusted: bytes | None) -> str | None:
    """valid / untrusted / invalid / unsigned for a capture manifest; None when it cannot be read."""
    if manifest_path is None:
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return "invalid"
    sig = check_signature(manifest, None if trusted is None else [trusted])
    if sig.status == "valid" and sig.trusted is False:
        return "untrusted"
    return sig.status


def _check_file(path: Path | None, recorded_sha256: str, recorded_size: int) -> tuple[str, str | None]:
    if path is None or not path.is_file():
        return "missing", None
    try:
        if recorded_size and path.stat().st_size != recorded_size:
            return "changed", sha256_file(path)
        seen = sha256_file(path)
    except FileNotFoundError:
        return "missing", None
    return ("ok" if seen == recorded_sha256 else "changed"), seen


def verify_store(
    db: Any,
    data_dir: Path,
    *,
    clock: Callable[[], float] = time.time,
    stop: threading.Event | None = None,
    batch: int = 200,
    scope: ColumnElement[bool] | None = None,
) -> PassResult:
    """Re-hash every listed evidence file of every alert (or of those `scope`, a condition on AlertRow,
    selects: a monitor sharing its database verifies its own, store.leases.owned_alerts) against its
    recorded SHA-256, check each capture manifest's signature, and store the results (one commit per
    alert)."""
    from review.detail import _listed_path, evidence_folder

    trusted = site_public_key(Path(data_dir))
    result = PassResult(started_ts=clock())
    after = ""
    while stop is None or not stop.is_set():
        with db.session() as s:
            ids = list(
                s.scalars(
                    select(AlertRow.id)
                    .where(AlertRow.id > after, AlertRow.evidence_dir.is_not(None))
                    .where(*([] if scope is None else [scope]))
                    .order_by(AlertRow.id)
                    .limit(batch)
                )
            )
            if not ids:
                break
            after = ids[-1]
            for alert_id in ids:
                if stop is not None and stop.is_set():
                    break
                alert = s.get(AlertRow, alert_id)
                if alert is None:
                    continue
                rows = s.scalars(
                    select(EvidenceFileRow)
                    .where(EvidenceFileRow.alert_id == alert_id)
                    .order_by(EvidenceFileRow.id)
                ).all()
                if not rows:
                    continue
                folder = evidence_folder(s, alert, Path(data_dir))
                checks = []
                signature = None
                for r in rows:
                    path = _listed_path(folder, r.name)
                    state, seen = _check_file(path, r.sha256, r.size)
                    checks.append((r.name, state, seen))
                    result.files += 1
                    result.states[state] += 1
                    if state != "ok":
                        result.bad.append((alert_id, r.name, state))
                    if r.name == "manifest.json" and state != "missing":
                        signature = manifest_signature_state(path, trusted)
                        if signature:
                            result.signatures[signature] += 1
                record_checks(s, alert_id, checks, clock(), signature)
                s.commit()
                result.alerts += 1
    result.finished_ts = clock()
    logger.info(
        "evidence verification pass: %d files of %d alerts, %s; signatures %s",
        result.files,
        result.alerts,
        dict(result.states) or "none",
        dict(result.signatures) or "none",
    )
    for alert_id, name, state in result.bad:
        logger.warning("evidence %s/%s: %s", alert_id, name, state)
    return result


def evidence_metrics(session: Session) -> str:
    """Prometheus lines: stored evidence file states and the newest check's time."""
    counts = dict.fromkeys(STATES, 0)
    for state, n in session.execute(select(EvidenceCheck.state, func.count()).group_by(EvidenceCheck.state)):
        counts[state] = counts.get(state, 0) + int(n)
    sigs: dict[str, int] = {}
    for sig, n in session.execute(
        select(EvidenceCheck.signature, func.count())
        .where(EvidenceCheck.signature.is_not(None))
        .group_by(EvidenceCheck.signature)
    ):
        sigs[str(sig)] = int(n)
    last = session.scalar(select(func.max(EvidenceCheck.checked_ts)))
    lines = [
        "# HELP livewatch_evidence_files Evidence files by their last stored verification state.",
        "# TYPE livewatch_evidence_files gauge",
        *(f'livewatch_evidence_files{{state="{k}"}} {v}' for k, v in counts.items()),
        "# HELP livewatch_evidence_manifest_signatures Capture manifests by signature status.",
        "# TYPE livewatch_evidence_manifest_signatures gauge",
        *(
            f'livewatch_evidence_manifest_signatures{{status="{k}"}} {sigs.get(k, 0)}'
            for k in ("valid", "untrusted", "invalid", "unsigned")
        ),
        "# HELP livewatch_evidence_last_check_timestamp_seconds When evidence was last verified (0: never).",
        "# TYPE livewatch_evidence_last_check_timestamp_seconds gauge",
        f"livewatch_evidence_last_check_timestamp_seconds {float(last or 0.0)}",
    ]
    return "\n".join(lines) + "\n"


class VerifyScheduler:
    """Runs `verify_store` every `interval_s` on one daemon thread (the first pass `first_delay_s` after
    start). The review app and the live monitor each run one (`livewatch monitor` records a missing or
    altered clip even when no review app runs); `run_pass` runs one pass on the caller's thread.

    `last` is the latest pass's result, `status()` a JSON-ready summary of it (the monitor's status
    file, `livewatch status`, /metrics), `on_pass` (optional) is called with each result after it is
    stored. A pass that fails is logged and shown in `status()`; the schedule carries on.
    """

    def __init__(
        self,
        db: Any,
        data_dir: Path,
        interval_s: float,
        *,
        first_delay_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        on_pass: Callable[[PassResult], None] | None = None,
        scope: ColumnElement[bool] | None = None,
    ) -> None:
        self.db = db
        self.data_dir = Path(data_dir)
        self.interval_s = interval_s
        self.first_delay_s = first_delay_s
        self.clock = clock
        self.on_pass = on_pass
        self.scope = scope  # which alerts a pass verifies (verify_store)
        self.last: PassResult | None = None
        self.passes = 0
        self.last_error: str | None = None
        self.last_error_ts: float | None = None
        self.in_pass = False
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one pass at a time (the thread, or a caller of run_pass)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval_s <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="evidence-verify", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_pass(self) -> PassResult | None:
        """One verification pass now; its result (None when it failed: see `last_error`)."""
        with self._lock:
            self.in_pass = True
            try:
                result = verify_store(
                    self.db, self.data_dir, clock=self.clock, stop=self._stop, scope=self.scope
                )
            except Exception as e:
                logger.exception("evidence verification pass failed")
                self.last_error, self.last_error_ts = f"{type(e).__name__}: {e}"[:500], self.clock()
                return None
            finally:
                self.in_pass = False
                self.passes += 1
            self.last, self.last_error, self.last_error_ts = result, None, None
        if self.on_pass is not None:
            try:
                self.on_pass(result)
            except Exception:
                logger.exception("callback after an evidence verification pass failed")
        return result

    def status(self, max_listed: int = 20) -> dict[str, Any]:
        """The schedule and the latest pass, JSON-ready: counts per state and signature status, and the
        first `max_listed` files not as captured."""
        last = self.last
        return {
            "interval_s": self.interval_s,
            "passes": self.passes,
            "in_pass": self.in_pass,
            "error": self.last_error,
            "error_ts": self.last_error_ts,
            "last": None
            if last is None
            else {
                "started_ts": last.started_ts,
                "finished_ts": last.finished_ts,
                "alerts": last.alerts,
                "files": last.files,
                "states": {k: last.states.get(k, 0) for k in STATES},
                "signatures": dict(last.signatures),
                "ok": last.ok,
                "bad": len(last.bad),
                "bad_files": [{"alert_id": a, "name": n, "state": st} for a, n, st in last.bad[:max_listed]],
            },
        }

    def _run(self) -> None:
        delay = self.first_delay_s
        while not self._stop.wait(delay):
            self.run_pass()
            delay = self.interval_s
