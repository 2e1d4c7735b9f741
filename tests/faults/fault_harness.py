"""Shared pieces of the fault-injection suite (tests/faults/): a short tone script, an in-process
monitor on loopback HLS with the fake model, and the checks every fault ends with.

The fakes (tests/live_helpers.py: ToneScript, ToneTranscriber, LookupRules) know which line was said
when on the source's clock, so after any fault the checks can say, line by line, whether an alert that
the recorded media allows was lost or raised twice. A line counts as "allowed" when one broadcast
recorded it whole (what a fault destroyed on the server side cannot be alerted on, and is not counted
as lost; the HLS checks measure that separately).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from live_helpers import HlsServer, LookupHolder, LookupRules, ToneScript, ToneTranscriber
from sqlalchemy import func, select

from alerts.evidence import sha256_file
from app.monitor import Monitor
from app.monitor_config import MonitorConfig
from store.db import Database
from store.models import AlertRow, Broadcast, EvidenceFileRow, MediaSegmentRow
from store.paths import resolve_stored

CATEGORIES = ("false_claim", "price_fraud", "vulgar", "fake_sales")
_NAMES = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥东南西北春夏秋冬"


def short_script(lines: int, period_s: float = 3.0) -> ToneScript:
    """`lines` lines `period_s` apart; four of every five carry a label (categories in turn, so two
    lines of one category are never within the grouping gap)."""
    # no character twice in a row ("11" would be read as a repetition and collapsed by the ASR clean-up)
    texts = tuple(f"{_NAMES[i]}号商品功效全网第一" for i in range(lines))
    labels = tuple(() if i % 5 == 4 else (CATEGORIES[i % len(CATEGORIES)],) for i in range(lines))
    return ToneScript(texts, labels, period_s=period_s, lead_s=0.5, length_s=1.8)


@dataclass
class FaultRow:
    fault: str
    injected: int = 0
    survived: int = 0
    lost: int = 0
    duplicated: int = 0
    notes: list[str] = field(default_factory=list)


def wait_for(cond: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def stream_cfg(stream_id: str, url: str, **over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": stream_id,
        "url": url,
        "stall_timeout_s": 4,
        "hls_live_edge": 1,
        "segment_s": 1.0,
        "reconnect": {"initial_s": 0.5, "max_s": 2},
    }
    d.update(over)
    return d


def make_monitor(
    data: Path, script: ToneScript, streams: list[dict[str, Any]], **cfg: Any
) -> tuple[Monitor, Database]:
    config = MonitorConfig.model_validate(
        {
            "data_dir": str(data),
            "alerts": {"pre_roll_s": 1.0, "post_roll_s": 1.0},
            "video": {"enabled": False},  # audio-only test media
            "streams": streams,
            **cfg,
        }
    )
    db = Database.for_data_dir(data)
    rules = LookupRules(script.lines())
    mon = Monitor(
        config, db, data, transcriber=ToneTranscriber(script), rule_holder=lambda dirs: LookupHolder(rules)
    )
    return mon, db


@contextmanager
def hls_server(
    script: ToneScript, folder: Path, *, list_size: int, hls_time_s: float = 1.0
) -> Iterator[HlsServer]:
    folder.mkdir(parents=True, exist_ok=True)
    media = folder / "tones.mp4"
    if not media.exists():
        script.make_media(media, video=False)
    with HlsServer(media, folder / "hls", hls_time_s=hls_time_s, list_size=list_size) as server:
        yield server


def recorded_until(db: Database, stream_id: str | None = None) -> float:
    """How far the recordings reach on the source's (= the script's) clock."""
    with db.session() as s:
        end = 0.0
        q = select(Broadcast)
        if stream_id is not None:
            q = q.where(Broadcast.stream_id == stream_id)
        for b in s.scalars(q):
            src0 = b.source_start_s
            seg_end = s.scalar(
                select(func.max(MediaSegmentRow.start_s + MediaSegmentRow.duration_s)).where(
                    MediaSegmentRow.broadcast_id == b.id
                )
            )
            if src0 is not None and seg_end is not None:
                end = max(end, float(src0) + float(seg_end))
        return end


def recorded_past(db: Database, past_s: float, stream_id: str | None = None) -> Callable[[], bool]:
    """A condition for wait_for: the recordings reach beyond `past_s` on the source's clock."""
    return lambda: recorded_until(db, stream_id) > past_s


def more_alerts(db: Database, than: int) -> Callable[[], bool]:
    """A condition for wait_for: more than `than` alerts are stored."""
    return lambda: alert_count(db) > than


def alert_count(db: Database, stream_id: str | None = None) -> int:
    with db.session() as s:
        q = select(func.count(AlertRow.id))
        if stream_id is not None:
            q = q.where(AlertRow.stream_id == stream_id)
        return int(s.scalar(q) or 0)


def ranges(db: Database, stream_id: str) -> list[tuple[str, float, float]]:
    """(broadcast, source start, source end) of every broadcast of a stream."""
    with db.session() as s:
        return [
            (
                b.id,
                float(b.source_start_s or 0.0),
                float(b.source_start_s or 0.0) + float(b.duration_s or 0.0),
            )
            for b in s.scalars(select(Broadcast).where(Broadcast.stream_id == stream_id))
        ]


@dataclass
class AlertCheck:
    expected: int  # line x category pairs recorded whole
    lost: int
    duplicated: int
    alerts: int
    problems: list[str]


def check_alerts(db: Database, script: ToneScript, stream_id: str) -> AlertCheck:
    """Every labelled line recorded whole has its alert; no line x category alerted twice (counts, so a
    fault test can report them before asserting)."""
    rs = ranges(db, stream_id)
    offset = {bid: lo for bid, lo, _ in rs}
    with db.session() as s:
        alerts = [
            (a.category, a.start_s + offset[a.broadcast_id], a.end_s + offset[a.broadcast_id])
            for a in s.scalars(select(AlertRow).where(AlertRow.stream_id == stream_id))
        ]
    expected = lost = dup = 0
    problems = []
    for line in script.lines():
        whole = any(lo <= line.start_s - 0.2 and line.end_s + 0.2 <= hi for _, lo, hi in rs)
        for c in line.labels:
            found = [a for a in alerts if a[0] == c and a[1] < line.end_s + 0.5 and a[2] > line.start_s - 0.5]
            if len(found) > 1:
                dup += len(found) - 1
                problems.append(f"{stream_id}: line at {line.start_s:.1f} s ({c}) alerted {len(found)} times")
            if whole:
                expected += 1
                if not found:
                    lost += 1
                    problems.append(
                        f"{stream_id}: line at {line.start_s:.1f} s ({c}) recorded whole, no alert"
                    )
    return AlertCheck(expected, lost, dup, len(alerts), problems)


def check_evidence(db: Database, data: Path) -> tuple[int, list[str]]:
    """Every alert has its evidence, and every evidence file (manifest included) hashes to what was
    stored. Returns (files verified, problems)."""
    problems: list[str] = []
    n = 0
    with db.session() as s:
        for a in s.scalars(select(AlertRow)):
            if a.evidence_status != "done" or not a.evidence_dir:
                problems.append(f"alert {a.id}: evidence {a.evidence_status}")
                continue
            folder = resolve_stored(a.evidence_dir, data)
            for f in s.scalars(select(EvidenceFileRow).where(EvidenceFileRow.alert_id == a.id)):
                path = folder / f.name
                if not path.exists():
                    problems.append(f"alert {a.id}: {f.name} missing")
                elif sha256_file(path) != f.sha256:
                    problems.append(f"alert {a.id}: {f.name} changed")
                else:
                    n += 1
    return n, problems


def evidence_settled(db: Database) -> bool:
    """Every broadcast is over and analysed to its end, and no alert waits for its evidence."""
    with db.session() as s:
        bs = s.scalars(select(Broadcast)).all()
        if not bs or not all(b.analysis_complete for b in bs):
            return False
        return not s.scalar(select(func.count(AlertRow.id)).where(AlertRow.evidence_status == "pending"))


def alerts_after(db: Database, stream_id: str, source_s: float) -> int:
    """Alerts of a stream whose moment lies after `source_s` on the source's clock."""
    offset = {bid: lo for bid, lo, _ in ranges(db, stream_id)}
    with db.session() as s:
        return sum(
            1
            for a in s.scalars(select(AlertRow).where(AlertRow.stream_id == stream_id))
            if a.start_s + offset.get(a.broadcast_id, 0.0) > source_s
        )


@contextmanager
def sqlite_exclusive_lock(path: Path) -> Iterator[None]:
    """Hold SQLite's exclusive lock on `path` from another connection (what a backup tool or a stuck
    process does): every other writer waits on its busy timeout."""
    con = sqlite3.connect(str(path), timeout=30, isolation_level=None)
    try:
        con.execute("BEGIN EXCLUSIVE")
        yield
        con.execute("COMMIT")
    finally:
        con.close()


def procs_under(folder: Path, name: str) -> list[int]:
    """Pids of running processes called `name` whose command line mentions `folder` (Linux /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            cmd
            and name in Path(cmd[0].decode(errors="replace")).name
            and any(str(folder).encode() in c for c in cmd)
        ):
            out.append(int(d.name))
    return out


def can_mount_tmpfs(probe: Path) -> str | None:
    """None when this process may mount a tmpfs (root and mount(8)), else the reason it may not."""
    import os
    import shutil
    import subprocess

    if os.geteuid() != 0:
        return "needs root to mount a tmpfs for a real full disk"
    if shutil.which("mount") is None:
        return "needs mount(8) for a real full disk"
    probe.mkdir(parents=True, exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True)
    if ok.returncode != 0:
        return f"mount -t tmpfs is not permitted here: {ok.stderr.decode(errors='replace').strip()}"
    subprocess.run(["umount", str(probe)], capture_output=True)
    return None


@contextmanager
def tmpfs_mount(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted on `where` (created), always unmounted afterwards."""
    import subprocess

    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill_disk(folder: Path, name: str = "filler.bin") -> int:
    """Write a file into `folder` until its file system is full (ENOSPC). Returns the bytes written."""
    import errno

    written = 0
    block = b"\0" * 65536
    with open(folder / name, "wb", buffering=0) as f:
        while True:
            try:
                written += f.write(block) or 0
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
        # top up the last partial block so not even a few bytes remain
        for size in (4096, 512, 1):
            while True:
                try:
                    written += f.write(b"\0" * size) or 0
                except OSError:
                    break
    return written
