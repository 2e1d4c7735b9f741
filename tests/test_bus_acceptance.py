"""Issue 14's acceptance on one machine: the whole pipeline on a real NATS JetStream bus, real PostgreSQL,
the real Whisper base model and live HLS served on 127.0.0.1.

1 ingest worker (+ 1 standing by), 2 ASR workers, 1 analyze worker, 3 streams: broadcast_0 (video + audio),
broadcast_1 (its audio, as AAC) and broadcast_0 again, each cut to its first `CUT_S` seconds (stream
copy; broadcast_1 encoded to AAC once, HLS cannot carry FLAC) and served as live HLS at its own speed.

Mid-broadcast, the ASR worker serving one stream (its config allows one) is killed with SIGKILL (its pending windows are delivered
again to the other ASR worker after the lease) and then the ingest worker is killed with SIGKILL (the
standing-by worker claims the streams after the lease, closes the dead one's broadcasts with a gap and
records on). Then:

- every stream's alerts, on the media's own clock (the broadcasts' `source_start_s` + `start_s`), are
  the alerts a scan of the same media raises (tests/data/asr_broadcast_*.json through the scan's
  analysis) within the tolerance of tests/test_bus_asr.py (same category, overlapping within ±2 s, 85 %
  each way, here over the three streams together, as each has only 4-5 alerts in its cut; a stream may
  miss one), counting only scan alerts inside a recorded span, `SPLICE_S` away from its ends: the
  recorder joins at the live edge, and the line spoken across the takeover's splice may be cut off, as
  tests/test_live_hls.py allows for the line spoken across a reconnect;
- each alert is stored once: no two alerts of a category overlap on the media clock (across the
  takeover too), each detection once;
- every alert has its evidence: a clip that ffmpeg decodes to the end;
- each stream's takeover is a closed gap in the ledger.

Waits on the store with deadlines, no fixed sleeps. Prints the figures the issue asks for.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_helpers import CORPUS, HlsServer
from sqlalchemy import func, select
from store_backends import pg_schema_url
from test_bus_asr import _bus_state
from test_bus_ingest import broadcasts, cut_media, gaps, ingest_config, start_worker, stop_workers, wait_for

from app.analysis import analyze_broadcast
from app.bus_analyze import connect
from app.bus_asr_run import LEASES as ASR_LEASES
from app.bus_config import BusSection
from app.bus_server import EmbeddedNats
from app.config import RootConfig
from app.price_scan import PriceScan
from detectors.engine import RuleSet
from detectors.evaluate import load_transcript
from detectors.price_config import load_price_config
from ingest import ffmpeg
from store.db import Database
from store.models import AlertRow, Broadcast, DetectionRow, EvidenceFileRow, UtteranceRow
from store.paths import resolve_stored

pytestmark = [pytest.mark.slow, pytest.mark.model]

DATA = Path(__file__).parent / "data"
CUT_S = 45.0
SHARE = 0.85
MEDIA = {"room-0": "broadcast_0", "room-1": "broadcast_1", "room-2": "broadcast_0"}


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    with EmbeddedNats(tmp_path / "nats") as server:
        yield server


def _media(tmp_path: Path) -> dict[str, Path]:
    b0 = cut_media(CORPUS / "broadcast_0.mp4", tmp_path / "b0.mp4", CUT_S)
    b1 = tmp_path / "b1.mp4"
    subprocess.run(
        [ffmpeg.ffmpeg_exe(), "-v", "error", "-y", "-i", str(CORPUS / "broadcast_1.flac"), "-t", str(CUT_S),
         "-c:a", "aac", "-b:a", "96k", str(b1)],
        check=True,
    )  # fmt: skip
    return {"broadcast_0": b0, "broadcast_1": b1}


def _scan_alerts(name: str, tmp_path: Path) -> list[dict[str, Any]]:
    cfg = RootConfig.model_validate({"semantic": {"enabled": False}})
    db = Database(f"sqlite:///{tmp_path / f'scan_{name}.db'}")
    try:
        result = analyze_broadcast(
            load_transcript(DATA / f"asr_{name}.json"), [], [],
            rules=RuleSet.load(cfg.rule_dirs()),
            price=PriceScan(db, load_price_config(cfg.price_config)),
            cfg=cfg.alerts, broadcast_id=name, stream_id=name, started_ts=1_760_000_000.0,
        )  # fmt: skip
    finally:
        db.dispose()
    return [{"category": a.category, "start_s": a.start_s, "end_s": a.end_s} for a in result.alerts]


def _near(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        a["category"] == b["category"]
        and a["start_s"] <= b["end_s"] + 2.0
        and a["end_s"] >= b["start_s"] - 2.0
    )


def _stream_alerts(db: Database, stream_id: str) -> list[dict[str, Any]]:
    """A stream's alerts over all its broadcasts, on the media clock."""
    with db.session() as s:
        rows = s.execute(
            select(AlertRow, Broadcast.source_start_s)
            .join(Broadcast, Broadcast.id == AlertRow.broadcast_id)
            .where(AlertRow.stream_id == stream_id)
        ).all()
        return [
            {"id": r.id, "category": r.category, "start_s": (s0 or 0.0) + r.start_s, "end_s": (s0 or 0.0) + r.end_s,
             "evidence": r.evidence_status, "dir": r.evidence_dir}
            for r, s0 in rows
        ]  # fmt: skip


def _spans(db: Database, stream_id: str) -> list[tuple[float, float]]:
    """The media-clock spans each broadcast of the stream recorded."""
    return [
        ((b.source_start_s or 0.0), (b.source_start_s or 0.0) + (b.duration_s or 0.0))
        for b in broadcasts(db, stream_id)
    ]


SPLICE_S = 4.0  # a line spoken across a broadcast's start or end (a join, the takeover) may be cut off


def _inside(a: dict[str, Any], spans: list[tuple[float, float]]) -> bool:
    return any(lo + SPLICE_S <= a["start_s"] and a["end_s"] <= hi - SPLICE_S for lo, hi in spans)


def _lines(db: Database, stream_id: str) -> list[tuple[str, int, float, float, str]]:
    """A stream's stored lines (for a failure's message)."""
    with db.session() as s:
        return [
            (b[-4:], u.idx, round(u.start_s, 1), round(u.end_s, 1), u.text)
            for u, b in s.execute(
                select(UtteranceRow, Broadcast.id)
                .join(Broadcast, Broadcast.id == UtteranceRow.broadcast_id)
                .where(Broadcast.stream_id == stream_id)
                .order_by(Broadcast.started_ts, UtteranceRow.idx)
            ).all()
        ]


def _settled(db: Database) -> bool:
    with db.session() as s:
        open_b = s.scalar(
            select(func.count())
            .select_from(Broadcast)
            .where(Broadcast.stream_id.in_(list(MEDIA)), Broadcast.status.in_(["live", "ended"]))
        )
        pending = s.scalar(
            select(func.count()).select_from(AlertRow).where(AlertRow.evidence_status == "pending")
        )
        n = s.scalar(select(func.count()).select_from(Broadcast))
    return bool(n) and open_b == 0 and pending == 0


async def _asr_leases(bus_url: str) -> dict[str, int]:
    """Stream token -> pid of the ASR worker holding its lease."""
    nc = await connect(BusSection(url=bus_url), "test-leases")
    try:
        out: dict[str, int] = {}
        try:
            kv = await nc.jetstream().key_value(ASR_LEASES)
        except Exception:  # no ASR worker made the bucket yet
            return out
        try:
            keys = await kv.keys()
        except Exception:  # no keys yet
            return out
        for k in keys:
            try:
                entry = await kv.get(k)
            except Exception:
                continue
            if entry.value:
                out[k] = int(json.loads(entry.value)["pid"])
        return out
    finally:
        await nc.close()


def _decodes(path: Path) -> bool:
    """ffmpeg reads the clip to its end without an error."""
    r = subprocess.run(
        [ffmpeg.ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
    )
    return r.returncode == 0 and not r.stderr.strip()


def test_ingest_asr_analyze_on_the_bus_with_kill_9_of_an_asr_and_the_ingest_worker(
    tmp_path: Path, nats: EmbeddedNats
) -> None:
    t_start = time.monotonic()
    media = _media(tmp_path)
    expected_by_media = {name: _scan_alerts(name, tmp_path) for name in set(MEDIA.values())}
    data = tmp_path / "data"
    procs: list[Any] = []
    with pg_schema_url() as url:
        db = Database(url, data)
        servers = {sid: HlsServer(media[name], tmp_path / f"hls-{sid}") for sid, name in MEDIA.items()}
        config = ingest_config(
            tmp_path / "cluster.yaml", data, nats.url, {sid: srv.url for sid, srv in servers.items()},
            bus={"asr_lease_s": 3, "asr_batch": 4, "asr_batch_wait_ms": 300},
            db_url=url, alerts={"pre_roll_s": 3.0, "post_roll_s": 3.0},
            video={"enabled": False},  # speech only here: the screen on the bus is tests/test_bus_video.py
        )  # fmt: skip
        # the ASR worker to be killed serves one stream (a small box); the other serves up to all three
        small = tmp_path / "asr-small.yaml"
        small.write_text(
            config.read_text(encoding="utf-8").replace(
                "asr_lease_s: 3", "asr_lease_s: 3\n  asr_max_streams: 1"
            )
        )
        logs = {k: tmp_path / f"{k}.log" for k in ("ingest", "asr", "analyze")}
        try:
            analyze = start_worker(config, logs["analyze"], "analyze")
            victim = start_worker(small, logs["asr"], "asr")
            first = start_worker(config, logs["ingest"], "ingest")
            procs += [analyze, victim, first]
            wait_for(
                lambda: logs["ingest"].read_text().count(" claimed (lease") >= 3, 60, "streams claimed", procs
            )
            standby = start_worker(config, logs["ingest"], "ingest")
            procs.append(standby)
            for srv in servers.values():
                srv.start()
            wait_for(
                lambda: victim.pid in asyncio.run(_asr_leases(nats.url)).values(),
                60,
                "a stream for the small ASR worker",
                procs,
            )
            survivor = start_worker(config, logs["asr"], "asr")
            procs.append(survivor)
            wait_for(
                lambda: sorted(asyncio.run(_asr_leases(nats.url)).values()) == sorted([victim.pid, survivor.pid, survivor.pid]),
                90, "the other streams served by the second ASR worker", procs,
            )  # fmt: skip
            held = next(k for k, pid in asyncio.run(_asr_leases(nats.url)).items() if pid == victim.pid)
            # kill -9 of that ASR worker once it stored a few transcript batches of its stream
            wait_for(
                lambda: any((b.asr_bus_seq or -1) >= 2 for b in broadcasts(db, held)),
                120, f"{held} transcribed a little", procs,
            )  # fmt: skip
            os.kill(victim.pid, signal.SIGKILL)
            asr_killed_at = next(b.asr_done_s for b in broadcasts(db, held))
            # kill -9 of the ingest worker mid-broadcast; the standing-by one claims its streams
            t0 = servers["room-0"].started_ts or time.time()
            wait_for(lambda: time.time() - t0 >= 22, 60, "22 s of the broadcasts served", procs)
            assert not servers["room-0"].finished
            os.kill(first.pid, signal.SIGKILL)
            killed = time.time()
            first.wait(10)
            wait_for(
                lambda: all(len(broadcasts(db, sid)) >= 2 for sid in MEDIA),
                60,
                "the streams taken over",
                procs,
            )
            recording_again_s = max(broadcasts(db, sid)[-1].created_ts for sid in MEDIA) - killed
            claims = re.findall(
                r"^(\S+ \S+) INFO app.bus_ingest: stream \S+ claimed.*$",
                logs["ingest"].read_text(encoding="utf-8"),
                re.M,
            )
            # the log's local time: "2026-01-01 12:00:00,123"
            claimed_ts = [
                time.mktime(time.strptime(c[:19], "%Y-%m-%d %H:%M:%S")) + int(c[20:]) / 1000 for c in claims
            ]
            reclaim_s = max(claimed_ts) - killed
            wait_for(lambda: all(s.finished for s in servers.values()), 120, "the broadcasts served", procs)
            wait_for(lambda: _settled(db), 300, "everything analysed, with evidence", procs)
            wall = time.monotonic() - t_start
            # every audio chunk and transcript batch acknowledged: nothing left pending on the bus
            wait_for(lambda: asyncio.run(_bus_state(nats.url)) == (0, 0), 15, "the bus drained", procs)
        finally:
            stop_workers(procs)
            for srv in servers.values():
                srv.stop()

        expected_n = arrived = duplicated = bus_n = bus_matched = gap_rows = 0
        gap_total = 0.0
        for sid, name in MEDIA.items():
            spans = _spans(db, sid)
            got = _stream_alerts(db, sid)
            expected = [e for e in expected_by_media[name] if _inside(e, spans)]
            comparable = [g for g in got if _inside(g, spans)]
            found = sum(any(_near(e, g) for g in got) for e in expected)
            matched = sum(any(_near(g, e) for e in expected_by_media[name]) for g in comparable)
            brief = [(g["category"], round(g["start_s"], 1), round(g["end_s"], 1)) for g in got]
            # a few alerts a stream: the share is over all streams; one stream misses at most one
            assert found >= len(expected) - 1, (sid, found, spans, expected, brief, _lines(db, sid))
            expected_n += len(expected)
            arrived += found
            bus_n += len(comparable)
            bus_matched += matched
            for a, b in itertools.combinations(got, 2):
                if a["category"] == b["category"] and a["start_s"] < b["end_s"] and b["start_s"] < a["end_s"]:
                    duplicated += 1
            for g in got:  # each with a playable clip
                assert g["evidence"] == "done", g
                with db.session() as s:
                    clips = s.scalars(
                        select(EvidenceFileRow.name).where(
                            EvidenceFileRow.alert_id == g["id"], EvidenceFileRow.kind == "clip"
                        )
                    ).all()
                assert clips, g
                folder = resolve_stored(g["dir"], data)
                assert all(_decodes(Path(folder) / c) for c in clips), (g, clips)
            closed = [x for x in gaps(db, sid) if x.end_ts is not None and "taken over" in x.reason]
            assert closed, (sid, [(x.reason, x.end_ts) for x in gaps(db, sid)])
            gap_rows += len(closed)
            gap_total += sum(x.end_ts - x.start_ts for x in closed if x.end_ts is not None)
            rows = broadcasts(db, sid)
            assert all(r.status == "done" and r.asr_complete for r in rows), [
                (r.status, r.end_reason) for r in rows
            ]
        assert arrived >= SHARE * expected_n, (arrived, expected_n)
        assert bus_matched >= SHARE * bus_n, (bus_matched, bus_n)
        assert duplicated == 0
        with db.session() as s:
            dets = s.execute(
                select(
                    DetectionRow.alert_id, DetectionRow.start_s, DetectionRow.rule_id, func.count()
                ).group_by(DetectionRow.alert_id, DetectionRow.start_s, DetectionRow.rule_id)
            ).all()
        assert dets and all(n == 1 for *_, n in dets)
        assert "ASR resumed from the store at" in logs["asr"].read_text(encoding="utf-8")
        print(
            f"\nacceptance: wall {wall:.0f} s; alerts expected {expected_n}, arrived {arrived}, duplicated "
            f"{duplicated}; bus alerts in the compared spans {bus_n}, matching the scan's {bus_matched}; ASR worker killed at {asr_killed_at:.1f} s of {held}; ingest leases re-claimed "
            f"{reclaim_s:.1f} s after kill -9 (lease 3 s), recording again after {recording_again_s:.1f} s; {gap_rows} gap(s) stored, {gap_total:.2f} s of media lost in all"
        )
        db.dispose()
