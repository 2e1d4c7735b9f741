"""The review tests' store: the corpus scanned by the real pipeline into one real SQLite per test session.

What is scanned (one `Scanner`, so the embedded Whisper model loads once; frames are not analysed, but
video evidence still gets its snapshot):
- broadcast_0.mp4 as stream `room-a`, started 2024-05-01 10:00 in Shanghai (video clips + snapshots);
- two short recordings of stream `room-b` a day apart, joined from corpus clips with real ffmpeg
  (2024-05-02 and 2024-05-03, audio only): the same serum sold at 只要199, then claimed at 原价999,
  which makes the price-history alert whose evidence cites the earlier claim.

Tests derive every expectation from what the store holds (`CorpusStore.alerts`, read back from the
database), never from constants, because rule packs and ASR improve under other engineers' hands.
The store is shared by the review test modules of one session: tests that decide on alerts pick their
own alerts and compare with the database at that moment.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from app.config import RootConfig
from app.pipeline import Scanner, ScanOptions
from ingest.ffmpeg import ffmpeg_exe
from store.db import Database
from store.models import AlertRow, DetectionRow, EvidenceFileRow

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "examples" / "corpus"
SHANGHAI = ZoneInfo("Asia/Shanghai")
START_0 = datetime(2024, 5, 1, 10, 0, tzinfo=SHANGHAI).timestamp()
START_DAY1 = datetime(2024, 5, 2, 14, 30, tzinfo=SHANGHAI).timestamp()
START_DAY2 = datetime(2024, 5, 3, 14, 30, tzinfo=SHANGHAI).timestamp()
# Whisper base hears d02 best after d28 (原價999) and mishears it after d13, whose 只要199 still counts.
DAY1_CLIPS = ("d13", "d02", "d26")
DAY2_CLIPS = ("d28", "d02", "d07")


@dataclass(frozen=True, slots=True)
class StoredAlert:
    alert_id: str
    broadcast_id: str
    stream_id: str | None
    category: str
    rule_id: str
    severity: str
    source: str
    text: str
    context: str
    law: str
    matched: str
    start_s: float
    start_ts: float
    has_snapshot: bool
    exact: bool  # the lead detection matched the transcript's own characters (not by pinyin or fuzz)
    contradicts: tuple[dict, ...]


@dataclass(slots=True)
class CorpusStore:
    data_dir: Path
    db: Database
    alerts: list[StoredAlert] = field(default_factory=list)  # oldest first

    def by_id(self, alert_id: str) -> StoredAlert:
        return next(a for a in self.alerts if a.alert_id == alert_id)

    @property
    def price_history_alert(self) -> str:
        return next(a.alert_id for a in self.alerts if a.contradicts)


def _join(ids: Sequence[str], out: Path) -> Path:
    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    for i in ids:
        args += ["-i", str(CORPUS / "clips" / f"{i}.flac")]
    graph = "".join(f"[{k}:a]" for k in range(len(ids))) + f"concat=n={len(ids)}:v=0:a=1[a]"
    subprocess.run(
        [*args, "-filter_complex", graph, "-map", "[a]", "-ar", "16000", "-ac", "1", str(out)], check=True
    )
    return out


def _read_back(db: Database) -> list[StoredAlert]:
    with db.session() as s:
        rows = list(s.scalars(select(AlertRow)))
        snaps = set(s.scalars(select(EvidenceFileRow.alert_id).where(EvidenceFileRow.kind == "snapshot")))
        modes = {(d.alert_id, d.rule_id): d.mode for d in s.scalars(select(DetectionRow))}
    out = [
        StoredAlert(
            alert_id=a.id,
            broadcast_id=a.broadcast_id,
            stream_id=a.stream_id,
            category=a.category,
            rule_id=a.rule_id,
            severity=a.severity,
            source=a.source,
            text=a.text,
            context=a.context,
            law=a.law,
            matched=str((a.payload or {}).get("matched", "")),
            start_s=a.start_s,
            start_ts=a.start_ts if a.start_ts is not None else a.created_ts,
            has_snapshot=a.id in snaps,
            exact=modes.get((a.id, a.rule_id)) == "exact",
            contradicts=tuple(((a.payload or {}).get("details") or {}).get("contradicts") or ()),
        )
        for a in rows
    ]
    return sorted(out, key=lambda a: (a.start_ts, a.alert_id))


def scan_store(data_dir: Path) -> CorpusStore:
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database.for_data_dir(data_dir)
    scanner = Scanner(RootConfig(data_dir=data_dir), db, data_dir=data_dir)
    scanner.scan(CORPUS / "broadcast_0.mp4", ScanOptions(stream_id="room-a", started_ts=START_0, video=False))
    media = data_dir / "media"
    media.mkdir()
    for ids, start in ((DAY1_CLIPS, START_DAY1), (DAY2_CLIPS, START_DAY2)):
        path = _join(ids, media / f"room-b-{'-'.join(ids)}.flac")
        scanner.scan(path, ScanOptions(stream_id="room-b", started_ts=start, video=False))
    store = CorpusStore(data_dir, db, _read_back(db))
    assert store.alerts, "the scan raised no alerts"
    return store


_shared: CorpusStore | None = None
_pristine: Path | None = None  # a copy of the shared store's data dir taken before any test decided an alert


def shared_store(tmp_path_factory: pytest.TempPathFactory) -> CorpusStore:
    """The session's scanned store (built on first use, ~30 s of CPU with the real Whisper model)."""
    global _shared, _pristine
    if _shared is None:
        store = scan_store(tmp_path_factory.mktemp("review-scan"))
        store.db.dispose()  # every connection closed: the SQLite file is whole (WAL checkpointed) to copy
        _pristine = tmp_path_factory.mktemp("review-scan-pristine") / "data"
        shutil.copytree(store.data_dir, _pristine)
        _shared = store
    return _shared


def private_store(tmp_path_factory: pytest.TempPathFactory) -> CorpusStore:
    """A store of a test's own, as scanned: a copy of the shared store taken before any test decided an
    alert in it (the scan itself runs once a session)."""
    shared_store(tmp_path_factory)
    assert _pristine is not None
    data = tmp_path_factory.mktemp("review-private") / "data"
    shutil.copytree(_pristine, data)
    db = Database.for_data_dir(data)
    store = CorpusStore(data, db, _read_back(db))
    assert _shared is not None and [a.alert_id for a in store.alerts] == [a.alert_id for a in _shared.alerts]
    return store
