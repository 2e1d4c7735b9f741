"""The alert page's data: alert, evidence files, clip timing, transcript with the matched words marked,
earlier price claims, decision history. Also the evidence package export from the store.

Files are located only through the database: an alert's `evidence_dir` (stored relative to the data
directory and resolved against the one this process was given: `data_dir`, else the session's, see
store.paths) and its `EvidenceFileRow` names. Nothing here takes a path from a request. Functions read
the caller's session and the evidence folder; `export_package` writes one zip (atomically) and nothing
else. Each evidence file's state (ok / changed / missing / unverified) comes from review.integrity.
"""

from __future__ import annotations

import json
import logging
import mimetypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.package import PackageInput, PackageResult, build_package
from alerts.signing import SiteKey
from review.decisions import decision_dict, history, latest_decisions
from review.evidence_checks import StoredCheck, manifest_signature_state, stored_checks
from review.integrity import EvidenceChecker, FileState, overall_state
from review.queries import CATEGORY_NAMES
from store.models import AlertRow, Broadcast, DetectionRow, EvidenceFileRow
from store.paths import resolve_payload, resolve_stored, session_data_dir

__all__ = [
    "PackageNotAvailable",
    "alert_detail",
    "evidence_file_path",
    "evidence_folder",
    "export_package",
    "mark_transcript",
    "media_type",
]

logger = logging.getLogger(__name__)

mimetypes.add_type("audio/flac", ".flac")
mimetypes.add_type("video/mp2t", ".ts")
mimetypes.add_type("video/x-matroska", ".mkv")


def media_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def evidence_folder(session: Session, alert: AlertRow, data_dir: Path | None = None) -> Path | None:
    """Where an alert's evidence folder is now (its stored path resolved against the data directory)."""
    if not alert.evidence_dir:
        return None
    return resolve_stored(alert.evidence_dir, data_dir if data_dir is not None else session_data_dir(session))


def _listed_path(folder: Path | None, name: str) -> Path | None:
    """`folder/name` if it stays inside `folder` (whether or not it exists)."""
    if folder is None:
        return None
    root = folder.resolve()
    path = (root / name).resolve()
    return path if path.parent == root else None


def evidence_file_path(
    session: Session, alert_id: str, name: str, data_dir: Path | None = None
) -> Path | None:
    """The file `name` of an alert's evidence, if the database lists it and it lies in the alert's folder.

    `name` is compared with the stored names, never joined onto a path unchecked: anything else
    (`../x`, absolute paths, other alerts' files) gives None.
    """
    alert = session.get(AlertRow, alert_id)
    if alert is None or not alert.evidence_dir:
        return None
    known = session.scalar(
        select(EvidenceFileRow.name).where(EvidenceFileRow.alert_id == alert_id, EvidenceFileRow.name == name)
    )
    if known is None:
        return None
    path = _listed_path(evidence_folder(session, alert, data_dir), known)
    if path is None or not path.is_file():
        return None
    return path


def file_states(
    session: Session,
    alert_id: str,
    *,
    data_dir: Path | None = None,
    checker: EvidenceChecker | None = None,
    full: bool = False,
) -> list[FileState]:
    """Each listed evidence file's state: the cheap check (exists, recorded size, cached hash) with a
    background hash queued in `checker`, or with `full` the SHA-256 of every file now."""
    alert = session.get(AlertRow, alert_id)
    if alert is None:
        return []
    rows = session.scalars(
        select(EvidenceFileRow).where(EvidenceFileRow.alert_id == alert_id).order_by(EvidenceFileRow.id)
    ).all()
    folder = evidence_folder(session, alert, data_dir)
    check = checker or _STAT_ONLY
    stored = {} if full else stored_checks(session, [alert_id]).get(alert_id, {})
    out = []
    for r in rows:
        path = _listed_path(folder, r.name)
        if full:
            out.append(check.verify(r.name, path, r.sha256))
        else:
            out.append(
                _with_stored(check.state(r.name, path, r.sha256, r.size), stored.get(r.name), _mtime(path))
            )
    return out


def _mtime(path: Path | None) -> float | None:
    try:
        return path.stat().st_mtime if path is not None else None
    except OSError:
        return None


def _with_stored(live: FileState, stored: StoredCheck | None, mtime: float | None = None) -> FileState:
    """The state to show: a hash computed after the stored check, what a stat shows wrong now, or the
    live check of a file modified since the stored check beats the stored result of the last
    verification pass; otherwise the stored result (checked "pass")."""
    if stored is None or (mtime is not None and mtime > stored.checked_ts):
        return live
    if live.checked == "sha256" and (live.checked_ts or 0.0) >= stored.checked_ts:
        return live
    if live.state in ("missing", "changed"):
        return live
    return FileState(live.name, stored.state, "pass", stored.checked_ts, stored.sha256_seen, live.actual_size)


class _StatOnly(EvidenceChecker):
    """No cache, no background work: what a caller without the app's checker gets."""

    def _queue(self, path: Path) -> None:
        return


_STAT_ONLY = _StatOnly()


def _norm_index() -> Any:
    try:
        from detectors.normalize import normalize
    except ImportError:  # the matcher's normalizer is optional here: fall back to plain text
        return None
    return normalize


def _find_span(text: str, needle: str) -> tuple[int, int] | None:
    """Character span of `needle` in `text`, comparing normalized forms (script, width, punctuation)."""
    if not needle:
        return None
    i = text.find(needle)
    if i >= 0:
        return i, i + len(needle)
    normalize = _norm_index()
    if normalize is None:
        return None
    hay, ndl = normalize(text), normalize(needle).text
    if not ndl:
        return None
    j = hay.text.find(ndl)
    if j < 0:
        return None
    return hay.orig_index[j], hay.orig_index[j + len(ndl) - 1] + 1


def mark_transcript(
    transcript: dict[str, Any], hits: Sequence[tuple[str, float, float, str]]
) -> dict[str, Any]:
    """Transcript for the page: each word with its offset in the clip and whether it belongs to a hit.

    `hits` are (source, start_s, end_s, matched) of the alert's detections. A word is marked when the
    matched text is found in its utterance (located through the words' characters) or, failing that,
    when its midpoint falls inside a detection's time.
    """
    clip_start = float(transcript.get("clip_start_s", 0.0))
    out_utts = []
    for u in transcript.get("utterances", []):
        u_start, u_end = float(u["start_s"]), float(u["end_s"])
        words = [(str(w[0]), float(w[1]), float(w[2])) for w in u.get("words", [])]
        if not words:
            words = [(str(u.get("text", "")), u_start, u_end)]
        marks = [False] * len(words)
        relevant = [
            h
            for h in hits
            if h[0] == u.get("source", h[0]) and h[2] >= u_start - 0.05 and h[1] <= u_end + 0.05
        ]
        joined = "".join(w[0] for w in words)
        bounds = []
        pos = 0
        for w in words:
            bounds.append((pos, pos + len(w[0])))
            pos += len(w[0])
        for _src, h0, h1, matched in relevant:
            span = _find_span(joined, matched)
            if span is not None:
                for k, (b0, b1) in enumerate(bounds):
                    if b0 < span[1] and b1 > span[0]:
                        marks[k] = True
            else:
                for k, (_t, w0, w1) in enumerate(words):
                    if h0 - 0.05 <= (w0 + w1) / 2 <= h1 + 0.05:
                        marks[k] = True
        out_utts.append(
            {
                "source": u.get("source", "speech"),
                "start_s": u_start,
                "end_s": u_end,
                "offset_s": round(max(0.0, u_start - clip_start), 3),
                "text": u.get("text", ""),
                "hit": any(marks),
                "words": [
                    {
                        "text": t,
                        "start_s": w0,
                        "end_s": w1,
                        "offset_s": round(max(0.0, w0 - clip_start), 3),
                        "hit": m,
                    }
                    for (t, w0, w1), m in zip(words, marks, strict=True)
                ],
            }
        )
    return {"clip_start_s": clip_start, "clip_end_s": transcript.get("clip_end_s"), "utterances": out_utts}


def _has_video(path: Path | None) -> bool:
    """Whether a clip has a picture (audio-only clips may still be .mp4), so the page picks its player."""
    if path is None or not path.is_file():
        return False
    from ingest.errors import MediaError
    from ingest.ffmpeg import probe

    try:
        return probe(path).has_video
    except MediaError:
        logger.warning("clip %s cannot be probed; offering an audio player", path)
        return False


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


def _file_url(alert_id: str, name: str) -> str:
    return f"/api/alerts/{alert_id}/files/{name}"


def _moment(session: Session, a: AlertRow) -> dict[str, Any]:
    """When the alert's moment was broadcast (see review.queries): start_ts, and what it is based on."""
    ts = a.start_ts
    if ts is None:
        b = session.get(Broadcast, a.broadcast_id)
        if b is not None and b.started_ts is not None:
            ts = b.started_ts + a.start_s
    return {"start_ts": ts, "time_basis": "broadcast" if ts is not None else "scan", "scanned_ts": a.created_ts}


def alert_detail(
    session: Session, alert_id: str, *, data_dir: Path | None = None, checker: EvidenceChecker | None = None
) -> dict[str, Any] | None:
    """The alert page's data. Each file carries its `state` (review.integrity) and the alert its
    `evidence_state` (the worst of them), from a cheap check; the full hash runs in `checker`'s background."""
    a = session.get(AlertRow, alert_id)
    if a is None:
        return None
    data_dir = data_dir if data_dir is not None else session_data_dir(session)
    files = list(
        session.scalars(
            select(EvidenceFileRow).where(EvidenceFileRow.alert_id == alert_id).order_by(EvidenceFileRow.id)
        )
    )
    folder = evidence_folder(session, a, data_dir)
    states = {f.name: f for f in file_states(session, alert_id, data_dir=data_dir, checker=checker)}
    manifest = _read_json(folder / "manifest.json") if folder else {}
    raw_transcript = _read_json(folder / "transcript.json") if folder else {}
    detections = list(session.scalars(select(DetectionRow).where(DetectionRow.alert_id == alert_id)))
    # a line-level detection (the semantic stage flags a whole line) marks words only where no rule
    # located its term: otherwise it would mark the whole line and hide which words the rules matched
    located = [d for d in detections if d.mode != "semantic"]
    hits = [(d.source, d.start_s, d.end_s, d.matched) for d in (located or detections)] or [
        (a.source, a.start_s, a.end_s, str((a.payload or {}).get("matched", "")))
    ]
    clip_info = manifest.get("clip") or {}
    clip_row = next((f for f in files if f.kind == "clip"), None)
    snap_row = next((f for f in files if f.kind == "snapshot"), None)
    clip = None
    if clip_row is not None:
        start = float(clip_info.get("start_s", raw_transcript.get("clip_start_s", 0.0)))
        clip = {
            "name": clip_row.name,
            "url": _file_url(alert_id, clip_row.name),
            "media_type": media_type(clip_row.name),
            "element": "video" if _has_video(folder / clip_row.name if folder else None) else "audio",
            "start_s": start,
            "end_s": clip_info.get("end_s"),
            "moment_offset_s": float(clip_info.get("moment_offset_s", max(0.0, a.start_s - start))),
            "moment_end_offset_s": round(max(0.0, a.end_s - start), 3),
            "reencoded": bool(clip_info.get("reencoded", False)),
            "method": clip_info.get("method", ""),
            "pre_roll_s": clip_info.get("pre_roll_s"),
            "post_roll_s": clip_info.get("post_roll_s"),
            "requested_post_roll_s": clip_info.get("requested_post_roll_s"),
            "post_roll_short": bool(clip_info.get("post_roll_short", False)),
            "state": states[clip_row.name].state if clip_row.name in states else "missing",
        }
    decisions = history(session, alert_id)
    latest = latest_decisions(session, [alert_id]).get(alert_id)
    payload = resolve_payload(dict(a.payload or {}), a.evidence_dir, data_dir)
    contradicts = _contradicts(session, payload, data_dir)
    evidence_state = overall_state(states.values()) if a.evidence_status == "done" else None
    manifest_signature = _manifest_signature(session, alert_id, folder, data_dir)
    return {
        "alert": {
            **payload,
            "alert_id": a.id,
            "broadcast_id": a.broadcast_id,
            "stream_id": a.stream_id,
            "category": a.category,
            "category_name": CATEGORY_NAMES.get(a.category, a.category),
            "code": a.code,
            "rule": a.rule_id,
            "severity": a.severity,
            "source": a.source,
            "start_s": a.start_s,
            "end_s": a.end_s,
            **_moment(session, a),
            "created_ts": a.created_ts,
            "text": a.text,
            "context": a.context,
            "law": a.law,
            "rules_version": a.rules_version,
            "evidence_status": a.evidence_status,
            "evidence_state": evidence_state,
        },
        "detections": [
            {
                "rule_id": d.rule_id,
                "code": d.code,
                "severity": d.severity,
                "source": d.source,
                "start_s": d.start_s,
                "end_s": d.end_s,
                "matched": d.matched,
                "score": d.score,
                "mode": d.mode,
            }
            for d in detections
        ],
        "status": latest.decision if latest else "unreviewed",
        "decisions": [decision_dict(d) for d in decisions],
        "files": [
            {
                "name": f.name,
                "kind": f.kind,
                "sha256": f.sha256,
                "size": f.size,
                "url": _file_url(alert_id, f.name),
                **_state_dict(states.get(f.name)),
            }
            for f in files
        ],
        "evidence_state": evidence_state,
        "manifest_signature": manifest_signature,
        "clip": clip,
        "snapshot_url": _file_url(alert_id, snap_row.name) if snap_row else None,
        "transcript": mark_transcript(raw_transcript, hits) if raw_transcript else None,
        "contradicts": contradicts,
        "claims": payload.get("claims", []),
        "media": manifest.get("media", []),
        "stream": manifest.get("stream", {}),
        "package_url": f"/api/alerts/{alert_id}/package",
    }


def _manifest_signature(
    session: Session, alert_id: str, folder: Path | None, data_dir: Path | None
) -> str | None:
    """The capture manifest's signature status: stored by the last pass, else checked now."""
    stored = stored_checks(session, [alert_id]).get(alert_id, {}).get("manifest.json")
    if stored is not None and stored.signature:
        return stored.signature
    if folder is None:
        return None
    from alerts.signing import site_public_key

    try:
        trusted = site_public_key(data_dir) if data_dir is not None else None
    except (OSError, ValueError):
        trusted = None
    return manifest_signature_state(folder / "manifest.json", trusted)


def _state_dict(st: FileState | None) -> dict[str, Any]:
    if st is None:
        return {"state": "missing", "checked": "stat", "checked_ts": None}
    return {"state": st.state, "checked": st.checked, "checked_ts": st.checked_ts}


def _contradicts(session: Session, payload: dict[str, Any], data_dir: Path | None) -> list[dict[str, Any]]:
    """Earlier price claims this alert contradicts, each linked to its own alert and clip when stored."""
    items = list(((payload.get("details") or {}).get("contradicts")) or [])
    out = []
    for c in items:
        c = dict(c)
        other = c.get("alert_id")
        c["alert_url"] = None
        c["clip_url"] = None
        if other and session.get(AlertRow, other) is not None:
            c["alert_url"] = f"#/alert/{other}"
            clip = session.scalar(
                select(EvidenceFileRow.name).where(
                    EvidenceFileRow.alert_id == other, EvidenceFileRow.kind == "clip"
                )
            )
            if clip:
                c["clip_url"] = _file_url(other, clip)
                other_row = session.get(AlertRow, other)
                other_folder = evidence_folder(session, other_row, data_dir) if other_row else None
                other_manifest = _read_json(other_folder / "manifest.json") if other_folder else {}
                start = float((other_manifest.get("clip") or {}).get("start_s", 0.0))
                if c.get("start_s") is not None:
                    c["clip_offset_s"] = round(max(0.0, float(c["start_s"]) - start), 3)
        out.append(c)
    return out


class PackageNotAvailable(Exception):
    """The alert has no finished evidence to package."""


def export_package(
    session: Session,
    alert_id: str,
    dest: Path,
    *,
    exported_by: str,
    tool_version: str,
    timezone: str,
    signing_key: SiteKey | None = None,
    data_dir: Path | None = None,
) -> PackageResult:
    """Package an alert's evidence, record and decisions into `dest` (a .zip path), signed with
    `signing_key` (when not given, the site key of the data directory, made if missing).

    Raises KeyError for an unknown alert, PackageNotAvailable without evidence, and
    alerts.package.EvidenceIntegrityError when the files on disk differ from the recorded hashes.
    """
    a = session.get(AlertRow, alert_id)
    if a is None:
        raise KeyError(alert_id)
    if not a.evidence_dir or a.evidence_status != "done":
        raise PackageNotAvailable(f"alert {alert_id} has no evidence yet (status {a.evidence_status})")
    recorded = {
        f.name: f.sha256
        for f in session.scalars(select(EvidenceFileRow).where(EvidenceFileRow.alert_id == alert_id))
    }
    data_dir = data_dir if data_dir is not None else session_data_dir(session)
    if signing_key is None and data_dir is not None:
        from alerts.signing import load_or_create_site_key

        signing_key = load_or_create_site_key(data_dir)
    folder = evidence_folder(session, a, data_dir)
    if folder is None:
        raise PackageNotAvailable(f"alert {alert_id} has no evidence folder")
    alert = dict(a.payload or {})  # as stored: its evidence paths relative to the data directory
    alert.setdefault("alert_id", a.id)
    decisions = [decision_dict(d) for d in history(session, alert_id)]
    result = build_package(
        PackageInput(
            alert=alert,
            evidence_dir=folder,
            recorded_sha256=recorded,
            decisions=decisions,
            exported_by=exported_by,
            tool_version=tool_version,
            timezone=timezone,
            signing_key=signing_key,
        ),
        dest,
    )
    logger.info("evidence package for %s written to %s (manifest %s)", alert_id, dest, result.manifest_sha256)
    return result
