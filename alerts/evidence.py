"""Evidence folders: clip, snapshot, transcript excerpt and a hashed manifest per alert.

The original recording is only ever read: the clip is a stream copy of its packets around the moment
(pre-roll and post-roll), re-encoded only when the container refuses a copy, and the manifest says so.
Every file handed out is listed in manifest.json with its SHA-256, and the manifest's own hash is kept
in the database. The manifest carries a `signature` object by the site's Ed25519 key (alerts.signing;
the key of the data directory, the parent of the evidence root, unless the request names one) over its
canonical JSON without that member, so a re-hashed manifest no longer verifies. A folder is written under a temporary name and renamed into place, so a crash never
leaves a half-written evidence folder behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alerts.signing import SiteKey, load_or_create_site_key, sign_manifest
from alerts.types import Alert, Evidence, EvidenceFile, MediaRef
from asr.types import Utterance
from detectors.types import Detection
from ingest import ffmpeg

__all__ = ["EvidenceRequest", "alert_payload", "clip_rolls", "sha256_file", "write_evidence"]

logger = logging.getLogger(__name__)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class EvidenceRequest:
    alert: Alert
    media: MediaRef  # the file the clip is cut from (a scanned file, or joined live segments)
    originals: tuple[MediaRef, ...]  # the untouched recordings behind `media` (itself, for a scan)
    utterances: tuple[Utterance, ...]
    out_root: Path
    pre_roll_s: float
    post_roll_s: float
    snapshot: bool
    tool_version: str
    stream: dict[str, Any]  # stream id, URL, room identity, broadcast wall-clock start
    payload: dict[str, Any]  # the alert JSON (without the evidence part)
    # the site key that signs the manifest; None: the key of the data directory, `out_root`'s parent
    # (made on first use). `sign=False` writes an unsigned manifest (old format, tests).
    signing_key: SiteKey | None = None
    sign: bool = True


def write_evidence(req: EvidenceRequest) -> Evidence:
    alert = req.alert
    out_root = Path(req.out_root).absolute()  # Evidence.dir names the folder whatever the caller's cwd
    final = out_root / alert.alert_id
    if (final / "manifest.json").exists():
        return _load_existing(final)
    tmp = out_root / f".{alert.alert_id}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        files = _write_files(req, tmp)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest_sha = sha256_file(final / "manifest.json")
    return Evidence(str(final), files, manifest_sha, clip_reencoded=bool(_clip_reencoded(final)))


def _write_files(req: EvidenceRequest, tmp: Path) -> tuple[EvidenceFile, ...]:
    alert, media = req.alert, req.media
    local_start = alert.start_s - media.start_s
    local_end = alert.end_s - media.start_s
    clip = ffmpeg.cut_clip(
        media.path, tmp / "clip", local_start - req.pre_roll_s, local_end + req.post_roll_s, media.duration_s
    )
    entries: list[tuple[str, str]] = [(Path(clip.path).name, "clip")]
    boxes = [b for d in alert.detections for b in d.details.get("boxes", [])]
    if req.snapshot and media.has_video:
        snap = tmp / "snapshot.jpg"
        # a visual alert's snapshot is the frame its boxes came from; otherwise just after the moment
        frame_t = next((d.details["frame_t_s"] for d in alert.detections if "frame_t_s" in d.details), None)
        at = (float(frame_t) - media.start_s) if frame_t is not None else local_start + 0.2
        ffmpeg.snapshot(media.path, min(at, max(0.0, media.duration_s - 0.1)), snap)
        if boxes:
            _draw_boxes(snap, boxes)
        entries.append((snap.name, "snapshot"))
    clip_start = clip.start_s + media.start_s
    clip_end = clip.end_s + media.start_s
    roll = clip_rolls(
        clip_start,
        clip_end,
        alert.start_s,
        alert.end_s,
        pre_roll_s=req.pre_roll_s,
        post_roll_s=req.post_roll_s,
    )
    if roll["post_roll_short"] or roll["pre_roll_short"]:
        logger.warning(
            "alert %s: clip has %.2f s pre-roll and %.2f s post-roll of the %.1f/%.1f s asked for "
            "(the recording ends or starts there)",
            alert.alert_id,
            roll["pre_roll_s"],
            roll["post_roll_s"],
            req.pre_roll_s,
            req.post_roll_s,
        )
    transcript = {
        "clip_start_s": clip_start,
        "clip_end_s": clip_end,
        "utterances": [
            {
                "index": u.index,
                "source": u.source,
                "start_s": u.start_s,
                "end_s": u.end_s,
                "text": u.text,
                "raw_text": u.raw_text,
                "words": [
                    [w.text, round(w.start_s, 3), round(w.end_s, 3), round(w.probability, 3)] for w in u.words
                ],
            }
            for u in req.utterances
            if u.end_s >= clip_start and u.start_s <= clip_end
        ],
    }
    (tmp / "transcript.json").write_text(
        json.dumps(transcript, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    entries.append(("transcript.json", "transcript"))
    files = tuple(
        EvidenceFile(name, kind, sha256_file(tmp / name), (tmp / name).stat().st_size)
        for name, kind in entries
    )
    manifest = {
        "format": "livewatch-evidence/1",
        "tool": {"name": "livewatch", "version": req.tool_version},
        "created_ts": time.time(),
        "alert": req.payload,
        "rule_id": alert.rule_id,
        "rules_version": alert.rules_version,
        "stream": req.stream,
        "media": [
            {
                "path": m.path,
                "sha256": m.sha256,
                "size": m.size,
                "start_s": m.start_s,
                "duration_s": m.duration_s,
            }
            for m in req.originals
        ],
        "clip": {
            "file": Path(clip.path).name,
            "start_s": clip_start,
            "end_s": clip_end,
            "requested_start_s": clip.requested_start_s + media.start_s,
            "requested_end_s": clip.requested_end_s + media.start_s,
            "moment_offset_s": round(alert.start_s - clip_start, 3),
            **roll,
            "reencoded": clip.reencoded,
            "method": "re-encode (stream copy refused)" if clip.reencoded else "stream copy",
        },
        "files": [{"name": f.name, "kind": f.kind, "sha256": f.sha256, "size": f.size} for f in files],
    }
    if req.sign:
        key = req.signing_key or load_or_create_site_key(Path(req.out_root).absolute().parent)
        manifest = sign_manifest(manifest, key)
    (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    return files


# A stream copy's length is known to a frame or an audio packet; less than this is not "short".
_ROLL_TOLERANCE_S = 0.25


def clip_rolls(
    clip_start_s: float,
    clip_end_s: float,
    moment_start_s: float,
    moment_end_s: float,
    *,
    pre_roll_s: float,
    post_roll_s: float,
) -> dict[str, Any]:
    """What the clip actually holds around the moment (from the cut clip's probed span), beside what was
    asked for: a recording that ends early (a crash, a dropped stream) gives a short post-roll, and the
    manifest says so instead of repeating the configured value."""
    pre = round(max(0.0, moment_start_s - clip_start_s), 3)
    post = round(clip_end_s - moment_end_s, 3)
    return {
        "pre_roll_s": pre,
        "post_roll_s": post,
        "requested_pre_roll_s": pre_roll_s,
        "requested_post_roll_s": post_roll_s,
        "pre_roll_short": pre < pre_roll_s - _ROLL_TOLERANCE_S,
        "post_roll_short": post < post_roll_s - _ROLL_TOLERANCE_S,
    }


def _clip_reencoded(folder: Path) -> bool:
    data = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return bool(data.get("clip", {}).get("reencoded"))


def _load_existing(folder: Path) -> Evidence:
    data = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    files = tuple(EvidenceFile(f["name"], f["kind"], f["sha256"], f["size"]) for f in data["files"])
    return Evidence(
        str(folder),
        files,
        sha256_file(folder / "manifest.json"),
        clip_reencoded=bool(data["clip"].get("reencoded")),
    )


def _draw_boxes(path: Path, boxes: Sequence[Sequence[Any]]) -> None:
    import cv2

    img = cv2.imread(str(path))
    if img is None:
        logger.warning("snapshot %s unreadable; boxes not drawn", path)
        return
    for b in boxes:
        x1, y1, x2, y2 = (int(v) for v in b[:4])
        label = f"{b[4]} {float(b[5]):.2f}" if len(b) >= 6 else ""
        cv2.rectangle(img, (x1, y1), (x2, y2), (0, 0, 255), 2)
        if label:
            cv2.putText(img, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 255), 1)
    cv2.imwrite(str(path), img)


def _stage_of(d: Detection) -> str:
    """The detection stage that produced `d`: rules, price (price checks), visual, or semantic."""
    if d.details.get("stage") == "semantic":
        return "semantic"
    if d.mode == "price" or d.rule_id.startswith("price."):
        return "price"
    if d.mode == "visual" or d.source == "visual":
        return "visual"
    return "rules"


def alert_payload(alert: Alert, *, stream_id: str | None, media_path: str) -> dict[str, Any]:
    """The alert object handed out on stdout, in the API and in the manifest (evidence added later)."""
    lead = next((d for d in alert.detections if d.rule_id == alert.rule_id), alert.detections[0])
    payload: dict[str, Any] = {
        "alert_id": alert.alert_id,
        "broadcast_id": alert.broadcast_id,
        "stream_id": stream_id,
        "media": media_path,
        "category": alert.category,
        "code": alert.code,
        "rule": alert.rule_id,
        "rules": sorted({d.rule_id for d in alert.detections}),
        "severity": alert.severity,
        "source": alert.source,
        "start_s": round(alert.start_s, 3),
        "end_s": round(alert.end_s, 3),
        "start_ts": alert.start_ts,
        "matched": lead.matched,
        "score": round(lead.score, 1),
        "text": alert.text,
        "context": alert.context,
        "law": alert.law,
        "rules_version": alert.rules_version,
    }
    claims = [d.claim for d in alert.detections if d.claim is not None]
    if claims:
        from dataclasses import asdict

        payload["claims"] = [asdict(c) for c in claims]
    extra = {k: v for d in alert.detections for k, v in d.details.items() if k in ("contradicts", "boxes")}
    # which stage raised the alert and why: rule hits name rule, words and match mode; price checks
    # their rule and description; the learned stage its nearest labelled lines
    stages: list[str] = []
    reasons: list[str] = []
    for d in sorted(alert.detections, key=lambda d: d is not lead):  # the lead rule's reason first
        stage = _stage_of(d)
        if stage not in stages:
            stages.append(stage)
        if stage == "semantic":
            continue
        why = f"{d.rule_id}: {d.matched!r} ({d.mode} {d.score:.0f})"
        if stage == "price" and d.details.get("description"):
            why = f"{d.rule_id}: {d.details['description']}"
        if why not in reasons and len(reasons) < 3:
            reasons.append(why)
    semantic = [d for d in alert.detections if d.details.get("stage") == "semantic"]
    if semantic:
        best = max(semantic, key=lambda d: (d.score, d.rule_id))
        reasons.append(best.details["semantic"]["reason"])
        extra["semantic"] = best.details["semantic"]
    order = ("rules", "price", "visual", "semantic")
    payload["stage"] = "+".join(sorted(stages, key=lambda x: order.index(x) if x in order else len(order)))
    payload["reason"] = "; ".join(reasons)
    if extra:
        payload["details"] = extra
    return payload
