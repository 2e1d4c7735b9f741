"""A review store built from the corpus the way the scan pipeline builds it.

Real parts: the corpus media (broadcast_0.mp4 with video, broadcast_1.flac audio only), the cached real
Whisper transcript of broadcast 0 (tests/data/asr_broadcast_0.json), real ffmpeg clips and snapshots
through `alerts.evidence.write_evidence`, `store.repo.save_alert` into a real SQLite. The detections are
the corpus's labelled violations located in that transcript by a term the ASR actually wrote, as the
rule engine reports them (rule id, category, code, severity, law, matched text, time from the words).

`build_store(data_dir)` returns a `CorpusStore` describing what was stored, so tests derive their
expectations from it rather than from constants.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alerts.evidence import EvidenceRequest, alert_payload, sha256_file, write_evidence
from alerts.grouping import context_text, make_alert
from alerts.types import MediaRef
from asr.types import Utterance, Word
from detectors.types import Detection, PriceClaim
from ingest.ffmpeg import probe
from store import repo
from store.db import Database
from store.models import Broadcast

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "examples" / "corpus"
ASR_0 = ROOT / "tests" / "data" / "asr_broadcast_0.json"

# (ASR term as Whisper wrote it, rule id, category, code, severity, law) — what the rule packs fire on.
RULES_0: list[tuple[str, str, str, str, str, str]] = [
    ("頂級", "false_claim.absolute", "false_claim", "A1", "high", "广告法 第9条(三)"),
    ("最低價", "false_claim.absolute", "false_claim", "A1", "high", "广告法 第9条(三)"),
    ("最強", "false_claim.absolute", "false_claim", "A1", "high", "广告法 第9条(三)"),
    ("性感", "vulgar.innuendo", "vulgar", "C1", "medium", "网络直播营销管理办法 第11条"),
    ("銷量冠軍", "fake_sales.volume", "fake_sales", "A5", "high", "电子商务法 第17条"),
    ("百分之百", "false_claim.absolute", "false_claim", "A1", "high", "广告法 第9条(三)"),
    ("比藥", "false_claim.medical", "false_claim", "A3", "critical", "广告法 第17条; 食品安全法 第73条"),
    ("窮鬼", "vulgar.insult", "vulgar", "C1", "medium", "网络直播营销管理办法 第11条"),
    ("原價", "price_fraud.reference_price", "price_fraud", "B2", "high", "价格法 第14条; 明码标价和禁止价格欺诈规定"),
    ("市場價", "price_fraud.reference_price", "price_fraud", "B2", "high", "价格法 第14条; 明码标价和禁止价格欺诈规定"),
    ("治療高血壓", "false_claim.medical", "false_claim", "A3", "critical", "广告法 第17条; 食品安全法 第73条"),
    ("抗癌", "false_claim.medical", "false_claim", "A3", "critical", "广告法 第17条; 食品安全法 第73条"),
]
# broadcast_1 has no cached transcript: alerts at labelled spans, with the span text as one utterance.
RULES_1 = 3
RULES_VERSION = "corpus-test-v1"
# Broadcast wall-clock starts on two different days (Asia/Shanghai), so statistics have two days.
START_0 = datetime(2024, 5, 1, 2, 0, tzinfo=UTC).timestamp()  # 10:00 in Shanghai
START_1 = datetime(2024, 5, 2, 6, 30, tzinfo=UTC).timestamp()  # 14:30 in Shanghai


@dataclass(slots=True)
class StoredAlert:
    alert_id: str
    broadcast_id: str
    stream_id: str
    category: str
    rule_id: str
    severity: str
    source: str
    matched: str
    start_s: float
    start_ts: float
    has_video: bool


@dataclass(slots=True)
class CorpusStore:
    data_dir: Path
    db: Database
    alerts: list[StoredAlert] = field(default_factory=list)
    price_history_alert: str | None = None  # an alert whose payload contradicts earlier claims

    def by_id(self, alert_id: str) -> StoredAlert:
        return next(a for a in self.alerts if a.alert_id == alert_id)


def _utterances_0() -> list[Utterance]:
    data = json.loads(ASR_0.read_text(encoding="utf-8"))
    return [
        Utterance(i, s["start_s"], s["end_s"], s["text"],
                  tuple(Word(w["text"], w["start_s"], w["end_s"], w["probability"]) for w in s["words"]))
        for i, s in enumerate(data["segments"])
    ]


def _locate(u: Utterance, term: str) -> tuple[float, float]:
    """Time of `term` inside `u` through its words (as the matcher maps characters to words)."""
    text = "".join(w.text for w in u.words)
    i = text.index(term)
    pos, start, end = 0, None, None
    for w in u.words:
        w0, w1 = pos, pos + len(w.text)
        if w1 > i and w0 < i + len(term):
            start = w.start_s if start is None else start
            end = w.end_s
        pos = w1
    assert start is not None and end is not None
    return start, end


def _store_broadcast(db: Database, data_dir: Path, media: Path, stream_id: str, started_ts: float,
                     utts: list[Utterance], detections: list[Detection], extra_payload: dict[str, dict[str, Any]]
                     ) -> list[tuple[Any, dict[str, Any]]]:
    info = probe(media)
    sha = sha256_file(media)
    ref = MediaRef(str(media.resolve()), sha, media.stat().st_size, 0.0, info.duration_s, info.has_video)
    broadcast_id = sha[:16]
    out = []
    with db.session() as s, s.begin():
        repo.ensure_stream(s, stream_id, url=f"https://live.example.com/{stream_id}", name=stream_id)
        s.add(Broadcast(id=broadcast_id, stream_id=stream_id, kind="file", source=ref.path, media_sha256=sha,
                        media_size=ref.size, duration_s=info.duration_s, started_ts=started_ts,
                        ended_ts=started_ts + info.duration_s, status="done", rules_version=RULES_VERSION,
                        meta={}, created_ts=started_ts))
        s.flush()
        repo.replace_utterances(s, broadcast_id, "speech", utts)
        for d in detections:
            alert = make_alert([d], broadcast_id=broadcast_id, rules_version=RULES_VERSION, started_ts=started_ts,
                               context=context_text(utts, d.start_s, d.end_s, 10.0, 5.0))
            payload = alert_payload(alert, stream_id=stream_id, media_path=ref.path)
            payload.update(extra_payload.get(d.matched, {}))
            ev = write_evidence(EvidenceRequest(
                alert=alert, media=ref, originals=(ref,), utterances=tuple(utts), out_root=data_dir / "evidence",
                pre_roll_s=10.0, post_roll_s=5.0, snapshot=True, tool_version="test",
                stream={"stream_id": stream_id, "started_ts": started_ts, "source": ref.path}, payload=payload))
            payload = {**payload, "evidence": {
                "dir": ev.dir, "manifest": str(Path(ev.dir) / "manifest.json"), "manifest_sha256": ev.manifest_sha256,
                "files": {f.name: {"kind": f.kind, "sha256": f.sha256, "size": f.size} for f in ev.files}}}
            repo.save_alert(s, alert, payload, ev, stream_id)
            out.append((alert, payload))
    return out


def build_store(data_dir: Path) -> CorpusStore:
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database.for_data_dir(data_dir)
    store = CorpusStore(data_dir, db)

    utts0 = _utterances_0()
    det0: list[Detection] = []
    for term, rule, cat, code, sev, law in RULES_0:
        u = next(u for u in utts0 if term in "".join(w.text for w in u.words))
        t0, t1 = _locate(u, term)
        claim = None
        if cat == "price_fraud":
            claim = PriceClaim("speech", u.start_s, u.end_s, u.text, reference_price=99.0 if term == "原價" else 1200.0,
                               reference_kind=term, current_price=199.0 if term == "原價" else 120.0)
        det0.append(Detection(rule, cat, code, sev, law, "speech", t0, t1, term, u.text, 100.0, "exact",
                              utterance_index=u.index, claim=claim))
    stored0 = _store_broadcast(db, data_dir, CORPUS / "broadcast_0.mp4", "room-a", START_0, utts0, det0, {})
    for alert, _payload in stored0:
        store.alerts.append(StoredAlert(alert.alert_id, alert.broadcast_id, "room-a", alert.category, alert.rule_id,
                                        alert.severity, alert.source, alert.detections[0].matched, alert.start_s,
                                        START_0 + alert.start_s, True))

    spans = [s for s in json.loads((CORPUS / "broadcast_1.json").read_text(encoding="utf-8"))["spans"]
             if "clean" not in s["labels"]][:RULES_1]
    utts1 = [Utterance(i, s["start_s"], s["end_s"], s["text"], ()) for i, s in enumerate(spans)]
    earlier = next(a for a in stored0 if a[0].detections[0].matched == "原價")[0]
    det1 = []
    extra: dict[str, dict[str, Any]] = {}
    for u, s in zip(utts1, spans, strict=True):
        cat = s["labels"][0]
        matched = s["text"][:4]
        det1.append(Detection(f"{cat}.corpus", cat, "X1", "medium", "测试法 第1条", "speech", u.start_s, u.end_s,
                              matched, u.text, 90.0, "fuzzy", utterance_index=u.index))
    # the first alert of broadcast 1 is a price-history alert contradicting broadcast 0's 原价 claim
    extra[det1[0].matched] = {"details": {"contradicts": [{
        "ts": START_0 + earlier.start_s, "broadcast_id": earlier.broadcast_id, "start_s": earlier.start_s,
        "end_s": earlier.end_s, "text": earlier.text, "alert_id": earlier.alert_id,
        "reference_price": 99.0, "current_price": 199.0}]}}
    stored1 = _store_broadcast(db, data_dir, CORPUS / "broadcast_1.flac", "room-b", START_1, utts1, det1, extra)
    for alert, _payload in stored1:
        store.alerts.append(StoredAlert(alert.alert_id, alert.broadcast_id, "room-b", alert.category, alert.rule_id,
                                        alert.severity, alert.source, alert.detections[0].matched, alert.start_s,
                                        START_1 + alert.start_s, False))
    store.price_history_alert = stored1[0][0].alert_id
    return store
