"""Several monitors on one database: instance ids, leases, scoped resume / sweeps / retention, adoption.

- Leases (SQLite and PostgreSQL): a live lease held by another live process refuses the start and names
  it; one left by a dead process of this host is taken over; two adopters racing for one dead
  monitor's broadcast get it once.
- Adoption of broadcasts whose recordings are not reachable (SQLite and PostgreSQL): closed as failed
  with a gap and the reason, nothing deleted; a live owner's broadcast and a finished one are left alone.
- End to end on PostgreSQL (skipped when none answers), real ffmpeg and loopback HLS, the fake tone
  transcriber: two monitor processes with their own streams and data directories side by side, one
  killed with SIGKILL and restarted (its resume closes only its own broadcast; the other keeps
  recording and alerting; the other's disk quota never deletes its files); and a killed monitor whose
  unfinished broadcast a survivor with `adopt_expired` adopts after the ttl (finishing its transcript,
  alerts and evidence from the dead one's data directory) while one without it leaves it alone.
Tests wait on database state with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from live_helpers import (
    ROOT,
    HlsServer,
    LookupHolder,
    LookupRules,
    ToneScript,
    ToneTranscriber,
    save_script,
    wait_for,
)
from sqlalchemy import func, select
from store_backends import BACKENDS, backend_url, pg_schema_url

from app.monitor import Monitor
from app.monitor_config import MonitorConfig
from store import leases
from store.db import Database
from store.leases import LeaseHeldError
from store.models import AlertRow, Broadcast, BroadcastGap, MediaSegmentRow, MonitorLease

IDS = ["d28", "d01", "d05", "d14", "d33", "d26", "d09", "d13", "d17", "d24", "d10", "d20"]
SCRIPT = ToneScript.from_corpus(IDS, period_s=4.0)
OFFLINE = "http://127.0.0.1:9/live.flv"  # a stream that never answers: a monitor with nothing to record


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with backend_url(request.param, tmp_path) as url:
        yield url


def _monitor(
    url: str, data: Path, instance: str, stream: dict[str, object], **extra: object
) -> tuple[Monitor, Database]:
    cfg = MonitorConfig.model_validate(
        {
            "data_dir": str(data),
            "instance_id": instance,
            "evidence": {"verify_interval_s": 3600},
            "streams": [{"reconnect": {"initial_s": 0.5, "max_s": 1.0}, **stream}],
            **extra,
        }
    )
    db = Database(url, data)
    rules = LookupRules(SCRIPT.lines())
    mon = Monitor(
        cfg, db, data, transcriber=ToneTranscriber(SCRIPT), rule_holder=lambda d: LookupHolder(rules)
    )
    return mon, db


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ---------------------------------------------------------------------------------------------------
# leases


def test_a_held_lease_refuses_the_start_and_a_dead_process_lease_is_taken_over(
    tmp_path: Path, db_url: str
) -> None:
    data = tmp_path / "data"
    mon, db = _monitor(db_url, data, "room-box", {"id": "r", "url": OFFLINE})
    now = time.time()
    with db.session() as s, s.begin():  # another live process of this host holds it
        s.add(
            MonitorLease(
                owner="room-box",
                host=leases.this_host(),
                pid=os.getppid(),
                data_dir="/elsewhere",
                started_ts=now,
                heartbeat_ts=now,
                expires_ts=now + 30,
            )
        )
    with pytest.raises(LeaseHeldError, match=rf"pid {os.getppid()} on host .*/elsewhere"):
        mon.start()
    mon.stop()  # a refused monitor's stop leaves the running one's lease and status alone
    with db.session() as s:
        row = s.get(MonitorLease, "room-box")
        assert row is not None and row.pid == os.getppid() and row.expires_ts == pytest.approx(now + 30)
    assert not (data / "status.json").exists()
    with db.session() as s, s.begin():  # another host's unexpired lease refuses too
        row = s.get(MonitorLease, "room-box")
        assert row is not None
        row.host = "other-box"
    with pytest.raises(LeaseHeldError, match="other-box"):
        _monitor(db_url, data, "room-box", {"id": "r", "url": OFFLINE})[0].start()
    with db.session() as s, s.begin():  # this host, a process that is gone (kill -9): taken over at once
        row = s.get(MonitorLease, "room-box")
        assert row is not None
        row.host, row.pid = leases.this_host(), _dead_pid()
    mon, _ = _monitor(
        db_url, data, "room-box", {"id": "r", "url": OFFLINE}, lease={"ttl_s": 3, "heartbeat_s": 0.2}
    )
    mon.start()
    try:
        with db.session() as s:
            row = s.get(MonitorLease, "room-box")
            assert row is not None and row.pid == os.getpid() and row.data_dir == str(data.absolute())
            first = row.heartbeat_ts

        def renewed() -> bool:
            with db.session() as s:
                r = s.get(MonitorLease, "room-box")
                return r is not None and r.heartbeat_ts > first

        wait_for(renewed, 10, "a heartbeat")
        assert mon.status()["lease"]["held"] is True
    finally:
        mon.stop()
    with db.session() as s:
        row = s.get(MonitorLease, "room-box")
        assert row is not None and row.expires_ts <= time.time()  # released at the clean stop
    db.dispose()


def _ghost_broadcast(db: Database, bid: str, owner: str | None, status: str, folder: str) -> None:
    with db.session() as s, s.begin():
        s.add(
            Broadcast(
                id=bid,
                stream_id=f"{bid}-room",
                kind="live",
                source="hls://x",
                started_ts=1000.0,
                status=status,
                rules_version="r",
                created_ts=1000.0,
                owner=owner,
                folder=folder,
                asr_done_s=2.0,
                analyzed_s=2.0,
                source_start_s=0.0,
            )
        )
        s.flush()  # no ORM relationship orders the inserts
        s.add(
            MediaSegmentRow(
                broadcast_id=bid,
                seq=0,
                path=f"{folder}/seg_000000.ts",
                start_s=0.0,
                duration_s=2.0,
                status="analyzed",
                size=100,
                created_ts=1002.0,
            )
        )
        s.add(
            AlertRow(
                id=f"{bid}-a1",
                broadcast_id=bid,
                stream_id=f"{bid}-room",
                category="false_claim",
                code="T1",
                rule_id="test.x",
                severity="high",
                source="speech",
                start_s=0.5,
                end_s=1.5,
                text="x",
                rules_version="r",
                evidence_status="pending",
                created_ts=1001.0,
                payload={},
            )
        )


def _lease(db: Database, owner: str, expires_ts: float, data_dir: str) -> None:
    with db.session() as s, s.begin():
        s.add(
            MonitorLease(
                owner=owner,
                host="dead-box",
                pid=4242,
                data_dir=data_dir,
                started_ts=900.0,
                heartbeat_ts=expires_ts - 3,
                expires_ts=expires_ts,
            )
        )


def test_adopting_broadcasts_whose_recordings_are_unreachable_closes_them_and_deletes_nothing(
    tmp_path: Path, db_url: str
) -> None:
    data = tmp_path / "survivor"
    db = Database(db_url, data)
    now = time.time()
    _lease(db, "dead", now - 10, "/mnt/dead-box/livewatch-data")  # expired, on a box we cannot see
    _lease(db, "alive", now + 3600, str(tmp_path / "alive-data"))
    _ghost_broadcast(db, "dead-b1", "dead", "live", "recordings/dead-b1-room/dead-b1")
    _ghost_broadcast(db, "alive-b1", "alive", "live", "recordings/alive-b1-room/alive-b1")
    _ghost_broadcast(db, "dead-b0", "dead", "done", "recordings/dead-b1-room/dead-b0")  # finished: not work
    # a legacy broadcast (before ownership) interrupted, its folder in the survivor's data directory
    (data / "recordings" / "old-room" / "legacy-b").mkdir(parents=True)
    _ghost_broadcast(db, "legacy-b", None, "live", "recordings/old-room/legacy-b")
    mon, _ = _monitor(
        db_url,
        data,
        "survivor",
        {"id": "r", "url": OFFLINE},
        lease={"ttl_s": 3, "heartbeat_s": 0.5, "adopt_expired": True},
    )
    mon.start()
    try:
        with db.session() as s:
            got = {b.id: b for b in s.scalars(select(Broadcast))}
            alerts = {a.id: a for a in s.scalars(select(AlertRow))}
            segs = s.scalars(select(MediaSegmentRow)).all()
            gaps = s.scalars(select(BroadcastGap).where(BroadcastGap.stream_id == "dead-b1-room")).all()
    finally:
        mon.stop()
    db.dispose()
    dead = got["dead-b1"]
    assert dead.owner == "survivor" and dead.status == "failed"
    assert dead.error and "not reachable from survivor" in dead.error and "dead-box" in dead.error
    assert dead.meta["adopted_from"] == "dead" and dead.end_reason == dead.error
    assert [g.reason for g in gaps] == [dead.error]
    assert alerts["dead-b1-a1"].evidence_status == "pending"  # it says why, and pins its files
    assert "not reachable" in alerts["dead-b1-a1"].payload["evidence_error"]
    assert not any(sg.deleted for sg in segs)
    assert (got["alive-b1"].owner, got["alive-b1"].status) == ("alive", "live")  # a live owner's: untouched
    assert (got["dead-b0"].owner, got["dead-b0"].status) == ("dead", "done")
    legacy = got["legacy-b"]  # claimed by the first monitor to resume it, and resumed as before
    assert legacy.owner == "survivor" and legacy.end_reason == "monitor stopped unexpectedly"


def test_two_adopters_racing_for_one_dead_monitors_broadcast_get_it_once(tmp_path: Path) -> None:
    with pg_schema_url() as url:
        db = Database(url, tmp_path)
        now = time.time()
        _lease(db, "dead", now - 10, str(tmp_path))
        _ghost_broadcast(db, "b1", "dead", "live", "recordings/b1-room/b1")
        _ghost_broadcast(db, "b2", "dead", "ended", "recordings/b1-room/b2")
        with db.session() as s:
            cands = [(bid, str(o)) for bid, o in s.execute(leases.adoptable("x", now))]
        assert sorted(cands) == [("b1", "dead"), ("b2", "dead")]
        first_done = threading.Event()
        second: list[list[str]] = []

        def other() -> None:
            with db.session() as s, s.begin():
                second.append(leases.adopt(s, "y", cands, now))  # waits on the rows the first holds

        with db.session() as s, s.begin():
            assert sorted(leases.adopt(s, "x", cands, now)) == ["b1", "b2"]
            t = threading.Thread(target=other)
            t.start()
            t.join(1.0)
            assert t.is_alive()  # blocked until the first commits
            first_done.set()
        t.join(30)
        assert second == [[]]
        with db.session() as s:
            assert {b.owner for b in s.scalars(select(Broadcast))} == {"x"}
        db.dispose()


# ---------------------------------------------------------------------------------------------------
# end to end: monitor processes on one PostgreSQL


def _proc_config(
    path: Path, url: str, data: Path, instance: str, stream_id: str, stream_url: str, **extra: object
) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(data),
                "db_url": url,
                "instance_id": instance,
                "evidence": {"verify_interval_s": 3600},
                "alerts": {"pre_roll_s": 1.0, "post_roll_s": 3.0},
                "lease": {"ttl_s": 3, "heartbeat_s": 0.5},
                "streams": [{"id": stream_id, "url": stream_url, "stall_timeout_s": 6, "hls_live_edge": 1}],
                **extra,
            }
        )
    )
    return path


def _spawn(config: Path, script: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(ROOT / "tests" / "live_helpers.py"), "monitor", str(config), str(script)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def _count(db: Database, model: type, *cond: object) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*cond)) or 0)  # type: ignore[arg-type]


def _broadcasts(db: Database, owner: str) -> list[Broadcast]:
    with db.session() as s:
        return list(
            s.scalars(select(Broadcast).where(Broadcast.owner == owner).order_by(Broadcast.started_ts))
        )


def _alerts(db: Database, owner: str) -> int:
    return _count(
        db, AlertRow, AlertRow.broadcast_id.in_(select(Broadcast.id).where(Broadcast.owner == owner))
    )


def _segments(db: Database, owner: str, *cond: object) -> list[MediaSegmentRow]:
    with db.session() as s:
        return list(
            s.scalars(
                select(MediaSegmentRow)
                .join(Broadcast, Broadcast.id == MediaSegmentRow.broadcast_id)
                .where(Broadcast.owner == owner, *cond)
            )
        )


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(60)


def _alive(*procs: subprocess.Popen[bytes]) -> None:
    for p in procs:
        assert p.poll() is None, f"monitor {p.args} exited with {p.returncode}"


@pytest.mark.slow
def test_two_monitors_on_one_postgres_run_side_by_side_and_a_restart_disturbs_neither(tmp_path: Path) -> None:
    media = SCRIPT.make_media(tmp_path / "tones.mp4")
    script = save_script(SCRIPT, tmp_path / "script.json")
    da, dbb = tmp_path / "data-a", tmp_path / "data-b"
    with (
        pg_schema_url() as url,
        HlsServer(media, tmp_path / "hls-a") as sa,
        HlsServer(media, tmp_path / "hls-b") as sb,
    ):
        db = Database(url, tmp_path)  # migrated once, before the monitors race to open it
        ca = _proc_config(tmp_path / "a.yaml", url, da, "mon-a", "room-a", sa.url)
        # B keeps its recordings under a tiny quota, checked every second: it deletes all it may of its own
        # and alerts on three lines only (5 s, 25 s, 41 s), so that files between their evidence may go
        sparse = ToneScript(
            SCRIPT.texts,
            tuple(lb if i in (1, 6, 10) else () for i, lb in enumerate(SCRIPT.labels)),
            SCRIPT.period_s,
            SCRIPT.lead_s,
            SCRIPT.length_s,
        )
        script_b = save_script(sparse, tmp_path / "script-b.json")
        cb = _proc_config(
            tmp_path / "b.yaml",
            url,
            dbb,
            "mon-b",
            "room-b",
            sb.url,
            disk_quota_gb=1e-6,
            retention_interval_s=1,
        )
        a = _spawn(ca, script, tmp_path / "a1.log")
        b = _spawn(cb, script_b, tmp_path / "b.log")
        try:

            def both_alerting() -> bool:
                _alive(a, b)
                return _alerts(db, "mon-a") >= 1 and _alerts(db, "mon-b") >= 1

            wait_for(both_alerting, 120, "both monitors recording and alerting")
            (b_live,) = _broadcasts(db, "mon-b")
            a.send_signal(signal.SIGKILL)  # uncleanly, mid-broadcast
            a.wait(10)
            (a_first,) = _broadcasts(db, "mon-a")
            assert a_first.status == "live"
            a = _spawn(ca, script, tmp_path / "a2.log")  # its lease: this host, a dead pid: taken over

            def a_resumed() -> bool:
                _alive(a, b)
                bs = _broadcasts(db, "mon-a")
                return bs[0].status != "live" and len(bs) >= 2

            wait_for(
                a_resumed, 60, "the restarted monitor to close its interrupted broadcast and record again"
            )
            bs = _broadcasts(db, "mon-a")
            assert bs[0].id == a_first.id and bs[0].end_reason == "monitor stopped unexpectedly"
            (b_now,) = _broadcasts(db, "mon-b")
            assert b_now.id == b_live.id and b_now.status == "live" and b_now.end_reason is None
            alerts_b, segs_b = _alerts(db, "mon-b"), len(_segments(db, "mon-b"))

            def b_goes_on() -> bool:
                _alive(a, b)
                return _alerts(db, "mon-b") > alerts_b and len(_segments(db, "mon-b")) > segs_b + 2

            wait_for(b_goes_on, 60, "the other monitor to keep recording and alerting")
            (b_now,) = _broadcasts(db, "mon-b")
            assert b_now.id == b_live.id and b_now.status == "live"  # never closed by A's resume
            wait_for(
                lambda: len(_segments(db, "mon-b", MediaSegmentRow.deleted.is_(True))) >= 3, 30, "B's quota"
            )
            segs_a = _segments(db, "mon-a")
            assert segs_a and not any(sg.deleted for sg in segs_a)  # B's quota never touched A's files
            assert all((da / sg.path).is_file() for sg in segs_a)
        finally:
            rc_a, rc_b = _stop(a), _stop(b)
        assert (rc_a, rc_b) == (0, 0)
        with db.session() as s:
            lease_rows = {r.owner: r for r in s.scalars(select(MonitorLease))}
            gaps_b = s.scalars(select(BroadcastGap).where(BroadcastGap.stream_id == "room-b")).all()
        assert set(lease_rows) == {"mon-a", "mon-b"}
        assert all(r.expires_ts <= time.time() for r in lease_rows.values())  # released at the clean stops
        assert "unexpectedly" not in " ".join(g.reason for g in gaps_b)  # B was never resumed as crashed
        db.dispose()


@pytest.mark.slow
def test_a_killed_monitors_broadcast_is_adopted_after_its_lease_expires_only_where_configured(
    tmp_path: Path,
) -> None:
    media = SCRIPT.make_media(tmp_path / "tones.mp4")
    script = save_script(SCRIPT, tmp_path / "script.json")
    dead_dir = tmp_path / "data-dead"
    with pg_schema_url() as url, HlsServer(media, tmp_path / "hls") as server:
        db = Database(url, tmp_path)
        cfg = _proc_config(tmp_path / "dead.yaml", url, dead_dir, "mon-dead", "room", server.url)
        victim = _spawn(cfg, script, tmp_path / "dead.log")
        lease = {"ttl_s": 3, "heartbeat_s": 0.5}
        rolls = {"alerts": {"pre_roll_s": 1.0, "post_roll_s": 3.0}}
        keeper, _ = _monitor(
            url, tmp_path / "data-keeper", "mon-keeper", {"id": "k", "url": OFFLINE}, lease=lease, **rolls
        )
        adopter, _ = _monitor(
            url,
            tmp_path / "data-adopter",
            "mon-adopter",
            {"id": "d", "url": OFFLINE},
            lease={**lease, "adopt_expired": True},
            **rolls,
        )
        keeper.start()
        adopter.start()
        try:

            def pending() -> bool:
                _alive(victim)
                return (
                    _count(db, AlertRow, AlertRow.evidence_status == "pending") >= 1
                    and _alerts(db, "mon-dead") >= 2
                )

            wait_for(pending, 120, "alerts raised with evidence pending")
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            killed = time.time()
            (b,) = _broadcasts(db, "mon-dead")

            def adopted() -> bool:
                with db.session() as s:
                    return s.scalar(select(Broadcast.owner).where(Broadcast.id == b.id)) == "mon-adopter"

            wait_for(adopted, 30, "the adoption")

            def finished() -> bool:
                with db.session() as s:
                    row = s.get(Broadcast, b.id)
                    left = s.scalar(
                        select(func.count())
                        .select_from(AlertRow)
                        .where(AlertRow.broadcast_id == b.id, AlertRow.evidence_status != "done")
                    )
                    return row is not None and row.status == "done" and left == 0

            wait_for(finished, 90, "the adopted broadcast transcribed, analysed and its evidence cut")
        finally:
            keeper.stop()
            adopter.stop()
            _stop(victim)
        with db.session() as s:
            row = s.get(Broadcast, b.id)
            assert row is not None
            alerts = s.scalars(select(AlertRow).where(AlertRow.broadcast_id == b.id)).all()
            segs = s.scalars(select(MediaSegmentRow).where(MediaSegmentRow.broadcast_id == b.id)).all()
            owners = set(s.scalars(select(Broadcast.owner)))
        db.dispose()
        meta = row.meta
        # not before the lease could have expired: its last heartbeat was at most heartbeat_s before the kill
        assert meta["adopted_from"] == "mon-dead" and meta["adopted_ts"] >= killed + 3 - 0.5 - 0.3
        assert row.end_reason == "monitor stopped unexpectedly" and row.asr_complete
        # its recordings were reached in the dead monitor's data directory and stay there
        assert row.folder == str(dead_dir.absolute() / meta["folder_before_adoption"])
        assert all(Path(sg.path).is_file() and Path(sg.path).is_relative_to(dead_dir) for sg in segs)
        assert len(alerts) >= 2 and all(a.evidence_status == "done" for a in alerts)
        # evidence still pending at the kill was cut by the adopter, into its own data directory
        assert any((tmp_path / "data-adopter" / (a.evidence_dir or "-")).is_dir() for a in alerts)
        assert all(
            (tmp_path / "data-adopter" / (a.evidence_dir or "-")).is_dir()
            or (dead_dir / (a.evidence_dir or "-")).is_dir()
            for a in alerts
        )
        assert "mon-keeper" not in owners  # without adopt_expired: left alone


def test_a_stop_on_a_full_disk_leaves_the_lease_to_expire(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Releasing the lease is the stop's last write: when the database refuses it (a full disk, a lost
    server) the stop still finishes, says so, and the lease expires on its own after its ttl."""
    from sqlalchemy.exc import OperationalError

    from app.monitor_lease import LeaseKeeper

    db = Database.for_data_dir(tmp_path)
    keeper = LeaseKeeper(db, "room-box", tmp_path, ttl_s=30, heartbeat_s=5)
    keeper.take()

    def refused(*_: object) -> None:
        raise OperationalError("UPDATE monitor_leases", {}, Exception("database or disk is full"))

    monkeypatch.setattr(leases, "release_lease", refused)
    keeper.release()  # no exception
    assert keeper.held  # not released: the row still names this owner until the ttl runs out
    assert "lease not released" in caplog.text and "expires 30 s after its last renewal" in caplog.text
    with db.session() as s:
        row = s.get(MonitorLease, "room-box")
        assert row is not None and row.expires_ts > time.time()  # still held until it runs out
    monkeypatch.undo()
    keeper.release()  # the database is back: released
    assert not keeper.held
    db.dispose()
