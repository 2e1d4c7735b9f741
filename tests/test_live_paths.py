"""Live recordings that move with the data: segment rows and broadcast folders stored relative to the
data directory, resolved when read.

A monitor records a tone broadcast (real ffmpeg, the fake model); its own evidence verification pass
(every 0.5 s here) sees the evidence, then a clip cut short. Then its data directory is moved
to another place. From there, a monitor cuts evidence again from the stored segments, `evidence
export` / `evidence verify` run from a third folder, a crash rescan re-registers a file under its
relative path, and retention deletes recordings in the new place. Revision 0007 rewriting an old
store's recording paths.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from live_helpers import LookupHolder, LookupRules, ToneScript, ToneTranscriber
from sqlalchemy import Connection, create_engine, delete, select, text
from store_backends import BACKENDS, backend_url

from alerts.evidence import sha256_file
from app.monitor import Monitor
from app.monitor_config import MonitorConfig
from store.db import Database
from store.live import rescan_segments
from store.migrations import alembic_config
from store.models import AlertRow, Broadcast, EvidenceCheck, EvidenceFileRow, MediaSegmentRow
from store.paths import resolve_stored
from store.retention import RetentionPolicy, apply_retention

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ToneScript(
    ("甲号商品功效全网第一", "乙号商品价格全网最低", "丙号商品今天就卖完"),
    (("false_claim",), ("price_fraud",), ()),
    period_s=3.0,
    lead_s=0.5,
    length_s=1.8,
)


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def _settled(db: Database) -> bool:
    with db.session() as s:
        bs = s.scalars(select(Broadcast)).all()
        pending = s.scalar(select(AlertRow.id).where(AlertRow.evidence_status == "pending").limit(1))
        return bool(bs) and all(b.status == "done" for b in bs) and pending is None


def _monitor(data: Path, media: Path, verify_s: float = 3600.0) -> tuple[Monitor, Database]:
    cfg = MonitorConfig.model_validate(
        {
            "data_dir": str(data),
            "evidence": {"verify_interval_s": verify_s},
            "alerts": {"pre_roll_s": 1.0, "post_roll_s": 1.0},
            "video": {"enabled": False},
            "streams": [{"id": "room", "url": str(media), "realtime": False, "segment_s": 1}],
        }
    )
    db = Database.for_data_dir(data)
    rules = LookupRules(SCRIPT.lines())
    mon = Monitor(
        cfg, db, data, transcriber=ToneTranscriber(SCRIPT), rule_holder=lambda dirs: LookupHolder(rules)
    )
    return mon, db


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LIVEWATCH_DATA_DIR", "LIVEWATCH_DB_URL")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )


@pytest.mark.slow
def test_a_recorded_broadcast_keeps_working_after_the_data_dir_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    media = SCRIPT.make_media(tmp_path / "tones.mp4", video=False)
    first = tmp_path / "A"
    first.mkdir()
    monkeypatch.chdir(first)  # the monitor runs with a relative data directory, as the quick start does
    mon, db = _monitor(Path("livewatch-data"), media, verify_s=0.5)
    mon.start()
    try:
        wait_for(lambda: _settled(db), 90, "the broadcast to be recorded, analysed and its evidence cut")
        # the monitor's own verification pass (no review app running) sees the evidence, then a damaged clip
        v = mon.verifier
        wait_for(lambda: v.last is not None and v.last.files >= 6 and v.last.ok, 30, "a verification pass")
        with db.session() as s:
            second = s.scalars(select(AlertRow).order_by(AlertRow.start_s)).all()[1]
        clip = next((Path("livewatch-data") / (second.evidence_dir or "")).glob("clip.*"))
        clip.write_bytes(clip.read_bytes()[:-100])
        wait_for(
            lambda: v.last is not None and (second.id, clip.name, "changed") in v.last.bad, 30, "the damage"
        )
        with db.session() as s:
            check = s.scalar(
                select(EvidenceCheck).where(
                    EvidenceCheck.alert_id == second.id, EvidenceCheck.name == clip.name
                )
            )
            assert check is not None and check.state == "changed"
        assert mon.status()["evidence_verify"]["last"]["states"]["changed"] == 1
    finally:
        mon.stop()
    assert v._thread is not None and not v._thread.is_alive()  # stopped with the monitor
    with db.session() as s:
        (b,) = s.scalars(select(Broadcast)).all()
        segs = s.scalars(select(MediaSegmentRow).order_by(MediaSegmentRow.seq)).all()
        alerts = s.scalars(select(AlertRow).order_by(AlertRow.start_s)).all()
    db.dispose()
    assert [a.category for a in alerts] == ["false_claim", "price_fraud"]
    folder = b.folder
    assert folder == f"recordings/room/{b.id}", folder  # relative to the data directory
    assert len(segs) >= 8 and all(sg.path == f"{folder}/seg_{sg.seq:06d}.ts" for sg in segs)

    target = tmp_path / "elsewhere" / "renamed-data"
    target.parent.mkdir()
    shutil.move(str(first / "livewatch-data"), str(target))
    away = tmp_path / "C"
    away.mkdir()
    monkeypatch.chdir(away)

    # the evidence of the first alert cut again, from the moved recordings
    aid = alerts[0].id
    shutil.rmtree(target / "evidence" / aid)
    mon, db = _monitor(target, media)
    with db.session() as s, s.begin():
        s.execute(delete(EvidenceFileRow).where(EvidenceFileRow.alert_id == aid))
        row = s.get(AlertRow, aid)
        assert row is not None
        row.evidence_status, row.evidence_dir = "pending", None
    mon.writer.start()
    try:
        assert mon.evidence.cut(aid)
    finally:
        mon.writer.stop()
    with db.session() as s:
        row = s.get(AlertRow, aid)
        assert row is not None
        assert row.evidence_status == "done", (row.evidence_status, row.payload)
        assert row.evidence_dir == f"evidence/{aid}"
    manifest = json.loads((target / "evidence" / aid / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["media"] and all(m["path"].startswith(f"{folder}/seg_") for m in manifest["media"])
    for m in manifest["media"]:
        assert sha256_file(target / m["path"]) == m["sha256"]

    # export and verify from a third folder
    out = away / "cases"
    out.mkdir()
    r = _cli("evidence", "export", aid, "--data-dir", str(target), "--out", str(out), cwd=away)
    assert r.returncode == 0, r.stderr
    package = Path(r.stdout.strip())
    ok = _cli("evidence", "verify", str(package), "--data-dir", str(target), cwd=away)
    assert ok.returncode == 0 and "OK: all" in ok.stdout and "signed by trusted key" in ok.stdout, (
        ok.stdout + ok.stderr
    )

    # a crash left a recorded file without its row: the rescan finds it in the new place
    with db.session() as s, s.begin():
        s.execute(delete(MediaSegmentRow).where(MediaSegmentRow.id == segs[-1].id))
    with db.session() as s, s.begin():
        end_s = rescan_segments(s, b.id, resolve_stored(folder, db.data_dir))
    assert end_s == pytest.approx(segs[-1].start_s + segs[-1].duration_s, abs=0.05)
    with db.session() as s:
        back = s.scalar(
            select(MediaSegmentRow).where(
                MediaSegmentRow.broadcast_id == b.id, MediaSegmentRow.seq == segs[-1].seq
            )
        )
        assert back is not None and back.path == segs[-1].path

    # retention deletes the recordings where they are now
    done = apply_retention(
        db, {"room": RetentionPolicy(max_age_s=0.0)}, time.time() + 10, pre_roll_s=1.0, post_roll_s=1.0
    )
    with db.session() as s:
        kept = s.scalars(select(MediaSegmentRow).where(MediaSegmentRow.deleted.is_(False))).all()
    db.dispose()
    assert done and all(
        not (target / sg.path).exists() for sg in segs if sg.id in {d.segment_id for d in done}
    )
    # what stays: the evidence's pinned files and the rescanned one (recorded, not yet analysed)
    assert kept and all((target / sg.path).is_file() for sg in kept)
    assert all(sg.pinned or sg.status == "recorded" for sg in kept) and any(sg.pinned for sg in kept)


# ---------------------------------------------------------------------------------------------------
# Revision 0007 on a store written before it


def _store_at(url: str, revision: str) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            from alembic import command

            command.upgrade(alembic_config(conn), revision)
            conn.commit()
    finally:
        engine.dispose()


def _broadcast(con: Connection, bid: str, folder: str) -> None:
    con.execute(
        text(
            "INSERT INTO broadcasts (id, stream_id, kind, source, status, rules_version, meta, created_ts) "
            "VALUES (:id, NULL, 'live', 'hls://x', 'ended', 'r1', :meta, 1.0)"
        ),
        {"id": bid, "meta": json.dumps({"dir": folder, "asr_done_s": 4.0})},
    )


def _segment(con: Connection, bid: str, seq: int, path: str) -> None:
    con.execute(
        text(
            "INSERT INTO media_segments (broadcast_id, seq, path, start_s, duration_s, status, pinned, "
            "deleted, size, created_ts) VALUES (:b, :seq, :path, :start, 1.0, 'analyzed', false, false, 10, 1.0)"
        ),
        {"b": bid, "seq": seq, "path": path, "start": float(seq)},
    )


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file inside the data directory the test makes, or a PostgreSQL schema
    (whose migration learns the data directory from the `Database` that opens it)."""
    data = tmp_path / "where-the-monitor-ran" / "livewatch-data"
    data.mkdir(parents=True)
    if request.param == "sqlite":
        yield f"sqlite:///{data / 'livewatch.db'}"
    else:
        with backend_url("postgresql", tmp_path) as u:
            yield u


def test_migration_rewrites_old_recording_paths_relative_to_the_data_dir(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ran_in = tmp_path / "where-the-monitor-ran"
    data = ran_in / "livewatch-data"
    sqlite = store_url.startswith("sqlite")
    _store_at(store_url, "0006")
    for b in ("b-abs", "b-rel"):
        (data / "recordings" / "room" / b).mkdir(parents=True)
        (data / "recordings" / "room" / b / "seg_000000.ts").write_bytes(b"x" * 10)
    outside = tmp_path / "other-disk" / "recordings" / "room" / "b-out"
    outside.mkdir(parents=True)
    engine = create_engine(store_url)
    with engine.begin() as con:
        _broadcast(con, "b-abs", str(data / "recordings" / "room" / "b-abs"))
        _broadcast(con, "b-rel", "livewatch-data/recordings/room/b-rel")  # relative to where it ran
        _broadcast(con, "b-out", str(outside))
        _broadcast(con, "b-gone", "livewatch-data/recordings/room/b-gone")  # folder gone: cannot tell
        for seq in range(3):  # seq 1 and 2 deleted by retention: the folder still tells
            _segment(con, "b-abs", seq, str(data / "recordings" / "room" / "b-abs" / f"seg_{seq:06d}.ts"))
            _segment(con, "b-rel", seq, f"livewatch-data/recordings/room/b-rel/seg_{seq:06d}.ts")
        _segment(con, "b-out", 0, str(outside / "seg_000000.ts"))
        _segment(con, "b-gone", 0, "livewatch-data/recordings/room/b-gone/seg_000000.ts")
    engine.dispose()
    monkeypatch.chdir(tmp_path)  # upgraded by a process started in another folder
    with caplog.at_level(logging.INFO, logger="store.migrations"):
        db = Database.for_data_dir(data) if sqlite else Database(store_url, data)
    with db.session() as s:
        paths = {(r.broadcast_id, r.seq): r.path for r in s.scalars(select(MediaSegmentRow))}
        dirs = {b.id: b.folder for b in s.scalars(select(Broadcast))}
    db.dispose()
    assert paths == {
        **{("b-abs", i): f"recordings/room/b-abs/seg_{i:06d}.ts" for i in range(3)},
        **{("b-rel", i): f"recordings/room/b-rel/seg_{i:06d}.ts" for i in range(3)},
        ("b-out", 0): str(outside / "seg_000000.ts"),
        ("b-gone", 0): "livewatch-data/recordings/room/b-gone/seg_000000.ts",
    }
    assert dirs == {
        "b-abs": "recordings/room/b-abs",
        "b-rel": "recordings/room/b-rel",
        "b-out": str(outside),
        "b-gone": "livewatch-data/recordings/room/b-gone",
    }
    msgs = [r.getMessage() for r in caplog.records if r.name == "store.migrations.0007"]
    left = [m for m in msgs if "left as they are" in m]
    assert len(left) == 2 and any("b-out" in m for m in left) and any("b-gone" in m for m in left)
    assert any("6 file row(s) and 2 broadcast folder(s) rewritten, 2 file row(s) left" in m for m in msgs)
    # moved afterwards, the rewritten rows follow the data
    new = tmp_path / "moved"
    shutil.move(str(data), str(new))
    db = Database.for_data_dir(new) if sqlite else Database(store_url, new)
    try:
        with db.session() as s:
            row = s.scalar(select(MediaSegmentRow).where(MediaSegmentRow.broadcast_id == "b-rel"))
            assert row is not None and resolve_stored(row.path, db.data_dir).is_file()
    finally:
        db.dispose()


# ---------------------------------------------------------------------------------------------------
# Revision 0010: a broadcast's progress moves from `meta` into typed columns, and back on downgrade

PROGRESS = {
    "dir": "recordings/room/b1",
    "source_start_s": 12.5,
    "media_gap_s": 0.0,
    "hls_last_seq": 41,
    "end_reason": "stream ended",
    "asr_done_s": 80.0,
    "asr_complete": True,
    "analyzed_s": 78.0,
    "analysis_complete": False,
    "video_expected": True,
    "video_done_s": 60.0,
    "video_resume_s": 55.0,
    "video_complete": False,
    "bus_seq": 7,
}


def test_revision_0010_moves_progress_into_columns_and_back(tmp_path: Path, store_url: str) -> None:
    data = tmp_path / "where-the-monitor-ran" / "livewatch-data"
    _store_at(store_url, "0009")
    other = {"hls_join": {"resume_after": 40}, "adopted_from": "mon-a"}
    engine = create_engine(store_url)
    with engine.begin() as con:
        con.execute(
            text(
                "INSERT INTO broadcasts (id, stream_id, kind, source, status, rules_version, meta, created_ts) "
                "VALUES ('b1', NULL, 'live', 'hls://x', 'ended', 'r1', :meta, 1.0), "
                "('scan', NULL, 'file', 'a.mp4', 'done', 'r1', :scan, 1.0)"
            ),
            {"meta": json.dumps({**PROGRESS, **other}), "scan": json.dumps({"asr_signature": "s"})},
        )
    engine.dispose()
    db = Database.for_data_dir(data) if store_url.startswith("sqlite") else Database(store_url, data)
    with db.session() as s:
        b, scan = s.get(Broadcast, "b1"), s.get(Broadcast, "scan")
        assert b is not None and scan is not None
        assert (b.folder, b.source_start_s, b.media_gap_s, b.hls_last_seq, b.end_reason) == (
            "recordings/room/b1", 12.5, 0.0, 41, "stream ended")
        assert (b.asr_done_s, b.asr_complete, b.analyzed_s, b.analysis_complete) == (80.0, True, 78.0, False)
        assert (b.video_expected, b.video_done_s, b.video_resume_s, b.video_complete, b.bus_seq) == (
            True, 60.0, 55.0, False, 7)
        assert b.meta == other  # only what is not progress stays in meta
        assert scan.meta == {"asr_signature": "s"} and scan.folder is None and not scan.asr_complete
        assert scan.asr_done_s == 0.0 and scan.bus_seq is None
    db.dispose()
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            from alembic import command

            command.downgrade(alembic_config(conn), "0009")
            conn.commit()
            raw = conn.execute(text("SELECT meta FROM broadcasts WHERE id = 'b1'")).scalar_one()
    finally:
        engine.dispose()
    meta = json.loads(raw) if isinstance(raw, str) else raw
    # a flag that was false comes back absent, as the monitor wrote it before
    assert meta == {**{k: v for k, v in PROGRESS.items() if v is not False}, **other}
