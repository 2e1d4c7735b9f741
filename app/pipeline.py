"""The scan pipeline: one media file → transcript → detections → alerts with evidence → store.

Synchronous: one `Scanner` owns one transcriber (and so one Whisper model) and one database handle. While
ASR runs, one helper thread (`_AnalysisPrep`) loads the rule packs (and the semantic stage) and embeds the
lines already transcribed, so the work that needs no audio is done by the time the transcript is; it
touches no store and nothing the caller sees until `Scanner.rules` hands the loaded set over. The whole result of a scan is committed in one transaction at the end, so a scan that
fails (bad input, crash, Ctrl-C) leaves nothing half-written in the store; evidence folders are written
atomically and reused by id when a scan is repeated.

Re-scanning the same file (same content hash and stream) never duplicates: the stored transcript is
reused when the ASR settings are unchanged (so changed rules re-run in seconds), and alerts have
deterministic ids.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from alerts.evidence import EvidenceRequest, alert_payload, sha256_file, write_evidence
from alerts.types import Alert, MediaRef
from app import __version__
from app.analysis import analyze_broadcast
from app.config import RootConfig
from app.price_scan import PriceScan
from asr.types import Utterance
from detectors.price_config import load_price_config
from detectors.types import Detection
from ingest.errors import MediaError
from ingest.ffmpeg import probe
from ingest.types import MediaInfo
from store import repo
from store.db import Database
from store.models import Broadcast

__all__ = ["ScanOptions", "ScanResult", "Scanner", "check_scannable"]

logger = logging.getLogger(__name__)

ProgressFn = Callable[[str, float, float], None]  # (stage, done, total)


@dataclass(frozen=True, slots=True)
class ScanOptions:
    stream_id: str | None = None
    started_ts: float | None = None  # wall-clock start of the recording (UTC epoch seconds)
    video: bool | None = None  # None: analyse frames when the media has video and video is enabled
    force: bool = False  # transcribe again even when a stored transcript matches


@dataclass(slots=True)
class ScanResult:
    broadcast_id: str
    media: MediaInfo
    media_sha256: str
    alerts: list[dict[str, Any]]
    reused: str  # "none" | "transcript" | "all"
    stats: dict[str, Any] = field(default_factory=dict)


def check_scannable(path: str | Path) -> MediaInfo:
    """Probe a file and refuse, with a one-line reason, anything a scan cannot use."""
    info = probe(path)
    if not info.has_audio:
        raise MediaError(str(path), "has no audio stream; livewatch needs the host's speech")
    return info


class _AnalysisPrep:
    """Loads the rule set on its own thread and embeds transcribed lines ahead of the analysis.

    Loading the packs (regex checks, ~30k lexicon terms normalized, jieba's dictionary) and the semantic
    stage's embeddings are CPU work that needs no audio; a scan does it while CTranslate2 decodes, and
    the analysis then finds the rules loaded and the embeddings cached. ``feed`` takes lines from the
    transcribing thread; ``rules()`` waits for the load and re-raises its error (a refused rules file
    fails the scan with the loader's own message, as before). Priming is best effort: a line it did not
    reach is embedded by the analysis as usual, so results never depend on this thread's timing.
    """

    def __init__(self, load: Callable[[], Any]) -> None:
        self._load = load
        self._loaded = threading.Event()
        self._rules: Any = None
        self._error: BaseException | None = None
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="scan-rules-prep", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._rules = self._load()
        except BaseException as e:  # handed to the caller of rules()
            self._error = e
        finally:
            self._loaded.set()
        prime = getattr(self._rules, "prime", None)
        while (text := self._lines.get()) is not None:
            if prime is not None:
                try:
                    prime([text])
                except Exception:  # the analysis embeds it again, and reports a real failure
                    logger.debug("priming an embedding failed", exc_info=True)
                    prime = None

    @property
    def error(self) -> BaseException | None:
        """The load's error once it has failed (None while loading or after a good load)."""
        return self._error

    def feed(self, text: str) -> None:
        self._lines.put(text)

    def rules(self) -> Any:
        self._loaded.wait()
        if self._error is not None:
            raise self._error
        return self._rules

    def close(self) -> None:
        """Stop priming (lines not yet embedded are embedded by the analysis) and let the thread end."""
        self._lines.put(None)


class Scanner:
    def __init__(self, cfg: RootConfig, db: Database, *, transcriber: Any = None, rules: Any = None,
                 data_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.db = db
        self.data_dir = data_dir or cfg.resolved_data_dir()
        self._transcriber = transcriber
        self._rules = rules
        self._prep: _AnalysisPrep | None = None
        self.price = PriceScan(db, load_price_config(cfg.price_config))

    def _load_rules(self) -> Any:
        from detectors.engine import RuleSet

        rules: Any = RuleSet.load(self.cfg.rule_dirs())
        rules.line_budget_s = self.cfg.rules.line_budget_ms / 1000 or None
        if self.cfg.semantic.enabled:  # the learned stage behind the rules; its hash joins the version
            from detectors.semantic import with_semantic

            rules = with_semantic(rules, self.cfg.semantic)
        return rules

    def _start_prep(self) -> None:
        """Start loading the rules in the background, unless they are loaded or loading."""
        if self._rules is None and self._prep is None:
            self._prep = _AnalysisPrep(self._load_rules)

    @property
    def rules(self) -> Any:
        if self._rules is None:
            if self._prep is None:
                self._rules = self._load_rules()
            else:
                prep = self._prep
                try:
                    self._rules = prep.rules()
                finally:  # a failed load is not kept: the next call loads again (a fixed file may follow)
                    self._prep = None
                    prep.close()
        return self._rules

    @property
    def transcriber(self) -> Any:
        if self._transcriber is None:
            from asr.build import build_transcriber

            self._transcriber = build_transcriber(self.cfg.asr)
        return self._transcriber

    def scan(self, path: str | Path, opts: ScanOptions | None = None, progress: ProgressFn | None = None
             ) -> ScanResult:
        opts = opts or ScanOptions()
        progress = progress or (lambda stage, done, total: None)
        t0 = time.perf_counter()
        self._start_prep()
        info = check_scannable(path)
        if opts.started_ts is None and info.creation_ts is not None:
            # the container's own start (a recorder stamps it): the broadcast's time for the review queue,
            # ledger and chart, rather than none at all (they would show when the file was scanned)
            opts = replace(opts, started_ts=info.creation_ts)
        media_sha = sha256_file(path)
        size = Path(path).stat().st_size
        broadcast_id = hashlib.sha256(f"file:{media_sha}:{opts.stream_id or ''}".encode()).hexdigest()[:16]
        video_on = bool(info.has_video and (opts.video if opts.video is not None else self.cfg.video.enabled))
        asr_sig = self.cfg.asr_signature()
        stats: dict[str, Any] = {"media_duration_s": info.duration_s, "video": video_on}

        with self.db.session() as s:
            b = s.get(Broadcast, broadcast_id)
            stored_speech = repo.load_utterances(s, broadcast_id, "speech") if b else []
            stored_screen = repo.load_utterances(s, broadcast_id, "screen") if b else []
            meta = dict(b.meta or {}) if b else {}
            if (b is not None and b.status == "done" and not opts.force
                    and meta.get("asr_signature") == asr_sig and meta.get("video") == video_on
                    and b.rules_version == self.rules.version):
                stored_alerts = repo.alert_payloads(s, alert_ids=meta.get("alert_ids", []))
                return ScanResult(broadcast_id, info, media_sha, stored_alerts, "all", {**stats, **meta.get("stats", {})})

        reused = "none"
        if stored_speech and meta.get("asr_signature") == asr_sig and not opts.force:
            speech = stored_speech
            reused = "transcript"
        else:
            speech = self._transcribe(path, info, progress)
        t_asr = time.perf_counter()
        rules = self.rules
        screen: list[Utterance] = []
        visual: list[Detection] = []
        video_sig = self.cfg.video_signature()
        if video_on and reused == "transcript" and meta.get("video_signature") == video_sig:
            screen = stored_screen
            visual = [_detection_from_json(d) for d in meta.get("visual_detections", [])]
        elif video_on:
            from app.video import read_video

            screen, visual = read_video(path, info, self.cfg.video,
                                        lambda done: progress("video", done, info.duration_s), stats)
        t_video = time.perf_counter()

        result = analyze_broadcast(speech, screen, visual, rules=rules, price=self.price, cfg=self.cfg.alerts,
                                   broadcast_id=broadcast_id, stream_id=opts.stream_id, started_ts=opts.started_ts)
        alerts = list(result.alerts)
        detections = result.detections
        price = result.price
        if price is None:
            raise RuntimeError("the scan's price analysis did not run")
        all_utts = sorted([*speech, *screen], key=lambda u: (u.start_s, u.source))
        media_ref = MediaRef(str(Path(path).resolve()), media_sha, size, 0.0, info.duration_s, info.has_video)
        payloads = self._evidence(alerts, media_ref, all_utts, opts, progress)
        t_ev = time.perf_counter()

        stats.update({
            "utterances": len(speech), "captions": len(screen), "detections": len(detections),
            "alerts": len(alerts), "asr_s": round(t_asr - t0, 3), "video_s": round(t_video - t_asr, 3),
            "analysis_s": round(t_ev - t_video, 3), "price_claims": len(price.claims),
        })
        with self.db.session() as s, s.begin():
            if opts.stream_id:
                repo.ensure_stream(s, opts.stream_id)
            b = s.get(Broadcast, broadcast_id)
            if b is None:
                b = Broadcast(id=broadcast_id, kind="file", source=str(Path(path).resolve()), created_ts=time.time())
                s.add(b)
            b.stream_id = opts.stream_id
            b.media_sha256, b.media_size, b.duration_s = media_sha, size, info.duration_s
            b.started_ts = opts.started_ts
            b.ended_ts = None if opts.started_ts is None else opts.started_ts + info.duration_s
            b.status, b.rules_version = "done", rules.version
            b.meta = {"asr_signature": asr_sig, "video": video_on, "video_signature": self.cfg.video_signature(),
                      "stats": stats, "visual_detections": [_detection_to_json(d) for d in visual],
                      "alert_ids": [a.alert_id for a in alerts]}
            s.flush()
            if reused == "none":
                repo.replace_utterances(s, broadcast_id, "speech", speech)
            if video_on:
                repo.replace_utterances(s, broadcast_id, "screen", screen)
            for alert, (payload, evidence) in zip(alerts, payloads, strict=True):
                repo.save_alert(s, alert, payload, evidence, opts.stream_id)
            self.price.save(s, price, broadcast_id=broadcast_id, stream_id=opts.stream_id,
                            started_ts=opts.started_ts)
        stored = self.db.session()
        try:
            out = repo.alert_payloads(stored, alert_ids=[a.alert_id for a in alerts])
        finally:
            stored.close()
        stats["total_s"] = round(time.perf_counter() - t0, 3)
        return ScanResult(broadcast_id, info, media_sha, out, reused, stats)

    # -- stages ---------------------------------------------------------------------------------------

    def _transcribe(self, path: str | Path, info: MediaInfo, progress: ProgressFn) -> list[Utterance]:
        from asr.audio import load_audio

        audio = load_audio(str(path))
        out: list[Utterance] = []
        progress("speech", 0.0, info.duration_s)
        prep = self._prep
        for u in self.transcriber.transcribe(audio):
            out.append(u)
            if prep is not None:
                if prep.error is not None:  # a refused rules file fails the scan now, not after the ASR
                    self._prep = None
                    raise prep.error
                prep.feed(u.text)
            progress("speech", min(u.end_s, info.duration_s), info.duration_s)
        progress("speech", info.duration_s, info.duration_s)
        return out

    def _evidence(self, alerts: list[Alert], media: MediaRef, utterances: list[Utterance], opts: ScanOptions,
                  progress: ProgressFn) -> list[tuple[dict[str, Any], Any]]:
        out = []
        root = self.data_dir / "evidence"
        for i, alert in enumerate(alerts):
            progress("evidence", i, len(alerts))
            payload = alert_payload(alert, stream_id=opts.stream_id, media_path=media.path)
            ev = write_evidence(EvidenceRequest(
                alert=alert, media=media, originals=(media,), utterances=tuple(utterances), out_root=root,
                pre_roll_s=self.cfg.alerts.pre_roll_s, post_roll_s=self.cfg.alerts.post_roll_s,
                snapshot=self.cfg.alerts.snapshot, tool_version=__version__,
                stream={"stream_id": opts.stream_id, "started_ts": opts.started_ts, "source": media.path},
                payload=payload,
            ))
            payload = {**payload, "evidence": {
                "dir": ev.dir,
                "manifest": str(Path(ev.dir) / "manifest.json"),
                "manifest_sha256": ev.manifest_sha256,
                "files": {f.name: {"kind": f.kind, "sha256": f.sha256, "size": f.size} for f in ev.files},
            }}
            out.append((payload, ev))
        progress("evidence", len(alerts), len(alerts))
        return out


def _detection_to_json(d: Detection) -> dict[str, Any]:
    return {"rule_id": d.rule_id, "category": d.category, "code": d.code, "severity": d.severity, "law": d.law,
            "source": d.source, "start_s": d.start_s, "end_s": d.end_s, "matched": d.matched, "text": d.text,
            "score": d.score, "mode": d.mode, "details": repo._jsonable(d.details)}


def _detection_from_json(d: dict[str, Any]) -> Detection:
    return Detection(**{k: d[k] for k in ("rule_id", "category", "code", "severity", "law", "source", "start_s",
                                          "end_s", "matched", "text", "score", "mode")}, details=d["details"])
