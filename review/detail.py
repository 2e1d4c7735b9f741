"""The alert page's data: alert, evidence files, clip timing, transcript with the matched words marked,
earlier price claims, decision history. Also the evidence package export from the store.

Files are located only through the database: an alert's `evidence_dir` and its `EvidenceFileRow`
names. Nothing here takes a path from a request. Functions read the caller's session and the evidence
folder; `export_package` writes one zip (atomically) and nothing else.
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
from review.decisions import decision_dict, history, latest_decisions
from review.queries import CATEGORY_NAMES
from store.models import AlertRow, DetectionRow, EvidenceFileRow

__all__ = [
    "PackageNotAvailable",
    "alert_detail",
    "evidence_file_path",
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


def evidence_file_path(session: Session, alert_id: str, name: str) -> Path | None:
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
    folder = Path(alert.evidence_dir).resolve()
    path = (folder / known).resolve()
    if path.parent != folder or not path.is_file():
        return None
    return path


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


def alert_detail(session: Session, alert_id: str) -> dict[str, Any] | None:
    a = session.get(AlertRow, alert_id)
    if a is None:
        return None
    files = list(
        session.scalars(
            select(EvidenceFileRow).where(EvidenceFileRow.alert_id == alert_id).order_by(EvidenceFileRow.id)
        )
    )
    folder = Path(a.evidence_dir) if a.evidence_dir else None
    manifest = _read_json(folder / "manifest.json") if folder else {}
    raw_transcript = _read_json(folder / "transcript.json") if folder else {}
    detections = list(session.scalars(select(DetectionRow).where(DetectionRow.alert_id == alert_id)))
    hits = [(d.source, d.start_s, d.end_s, d.matched) for d in detections] or [
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
        }
    decisions = history(session, alert_id)
    latest = latest_decisions(session, [alert_id]).get(alert_id)
    payload = dict(a.payload or {})
    contradicts = _contradicts(session, payload)
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
            "start_ts": a.start_ts,
            "created_ts": a.created_ts,
            "text": a.text,
            "context": a.context,
            "law": a.law,
            "rules_version": a.rules_version,
            "evidence_status": a.evidence_status,
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
            }
            for f in files
        ],
        "clip": clip,
        "snapshot_url": _file_url(alert_id, snap_row.name) if snap_row else None,
        "transcript": mark_transcript(raw_transcript, hits) if raw_transcript else None,
        "contradicts": contradicts,
        "claims": payload.get("claims", []),
        "media": manifest.get("media", []),
        "stream": manifest.get("stream", {}),
        "package_url": f"/api/alerts/{alert_id}/package",
    }


def _contradicts(session: Session, payload: dict[str, Any]) -> list[dict[str, Any]]:
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
                other_manifest = (
                    _read_json(Path(other_row.evidence_dir) / "manifest.json")
                    if other_row and other_row.evidence_dir
                    else {}
                )
                start = float((other_manifest.get("clip") or {}).get("start_s", 0.0))
                if c.get("start_s") is not None:
                    c["clip_offset_s"] = round(max(0.0, float(c["start_s"]) - start), 3)
        out.append(c)
    return out


class PackageNotAvailable(Exception):
    """The alert has no finished evidence to package."""


def export_package(
    session: Session, alert_id: str, dest: Path, *, exported_by: str, tool_version: str, timezone: str
) -> PackageResult:
    """Package an alert's evidence, record and decisions into `dest` (a .zip path).

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
    alert = dict(a.payload or {})
    alert.setdefault("alert_id", a.id)
    decisions = [decision_dict(d) for d in history(session, alert_id)]
    result = build_package(
        PackageInput(
            alert=alert,
            evidence_dir=Path(a.evidence_dir),
            recorded_sha256=recorded,
            decisions=decisions,
            exported_by=exported_by,
            tool_version=tool_version,
            timezone=timezone,
        ),
        dest,
    )
    logger.info("evidence package for %s written to %s (manifest %s)", alert_id, dest, result.manifest_sha256)
    return result
