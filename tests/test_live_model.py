"""Acceptance: a corpus video served as live HLS, monitored by `livewatch monitor` with the real model.

`ffmpeg -re broadcast_0.mp4 → HLS → http.server` on 127.0.0.1; `livewatch monitor` (a real process,
streamlink, the embedded Whisper base model, the shipped rule packs) records and alerts. Halfway the
monitor is killed with SIGKILL and started again. Afterwards: the interrupted broadcast was closed and
its tail transcribed, every stored utterance was analysed once, no (line, category) was alerted twice,
the labelled lines recorded whole were alerted, every clip is playable and matches its manifest, and
`livewatch status` reports the stream.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from live_helpers import CORPUS, HlsServer, alerts_pending, all_done, wait_for
from sqlalchemy import select
from test_bus_ingest import cut_media

from alerts.evidence import sha256_file
from ingest.ffmpeg import probe
from store.db import Database
from store.models import AlertRow, Broadcast, BroadcastGap, UtteranceRow

pytestmark = [pytest.mark.slow, pytest.mark.model]

SPANS = json.loads((CORPUS / "broadcast_0.json").read_text(encoding="utf-8"))["spans"]
# The first 86 s of broadcast_0 (stream copy, 17 labelled lines): enough for a kill mid-broadcast, a
# restart and ten lines recorded whole, 40 s less of CI than the whole 124 s file.
CUT_S = 86.0


def livewatch(*args: str) -> list[str]:
    return [sys.executable, "-c", "from app.cli import main; main()", *args]


def test_live_hls_through_the_cli_with_a_kill_9_and_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    media = cut_media(CORPUS / "broadcast_0.mp4", tmp_path / "broadcast_0_cut.mp4", CUT_S)
    with HlsServer(media, tmp_path / "hls") as server:
        config = tmp_path / "monitor.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "data_dir": str(data),
                    "video": {"enabled": False},
                    "alerts": {"pre_roll_s": 3.0, "post_roll_s": 3.0},
                    "defaults": {"record_video": True, "hls_live_edge": 1, "stall_timeout_s": 12},
                    "streams": [{"id": "room", "url": server.url}],
                }
            ),
            encoding="utf-8",
        )
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        cmd = livewatch("monitor", "--config", str(config))
        with (tmp_path / "run1.log").open("w") as log:
            # own process groups: whatever a monitor leaves behind (streamlink, ffmpeg) is reaped below
            first = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
            # mid-broadcast: the model loaded, alerts raised, a clip still waiting for its post-roll
            wait_for(lambda: alerts_pending(data, first, n=1), 240, "a live alert")
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        with (tmp_path / "run2.log").open("w") as log:
            second = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
            try:
                wait_for(lambda: server.finished, 300, "the end of the broadcast")
                # the end noticed (stall timeout), the last line transcribed, its alert and its clip
                wait_for(lambda: all_done(data), 180, "every broadcast done and every clip cut")
                status = subprocess.run(
                    livewatch("status", "--config", str(config), "--json"),
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=60,
                )
            finally:
                second.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop
                try:
                    code = second.wait(120)
                finally:
                    for proc in (first, second):  # a hung stop must fail this test, not stall the run
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(proc.pid, signal.SIGKILL)
                assert code == 0, (tmp_path / "run2.log").read_text()[-3000:]

    rows = json.loads(status.stdout)
    assert rows["running"] is True and rows["streams"][0]["stream_id"] == "room"
    assert rows["streams"][0]["alerts_today"] >= 5

    db = Database.for_data_dir(data)
    with db.session() as s:
        bs = s.scalars(select(Broadcast).order_by(Broadcast.started_ts)).all()
        alerts = s.scalars(select(AlertRow)).all()
        utts = s.scalars(select(UtteranceRow).order_by(UtteranceRow.broadcast_id, UtteranceRow.start_s)).all()
        gaps = s.scalars(select(BroadcastGap).order_by(BroadcastGap.start_ts)).all()
    assert len(bs) >= 2 and bs[0].end_reason == "monitor stopped unexpectedly"
    assert bs[0].asr_complete and bs[0].status == "done"
    # the gap is stored on the media clock: it starts where the killed run's recorded media ends
    assert gaps and gaps[0].end_ts is not None
    if bs[0].duration_s:
        assert gaps[0].start_ts == pytest.approx(bs[0].started_ts + bs[0].duration_s)
    else:
        assert gaps[0].start_ts == bs[0].ended_ts

    # every utterance analysed, none transcribed twice within a broadcast
    assert utts and all(u.analyzed for u in utts)
    for a, b in itertools.pairwise(utts):
        if a.broadcast_id == b.broadcast_id:
            assert b.start_s >= a.end_s - 0.05, (a.text, b.text)

    # alerts on the corpus clock (the producer's clock is the file's, each broadcast knows its offset)
    offset = {b.id: float(b.source_start_s or 0.0) for b in bs}
    ranges = [(offset[b.id], offset[b.id] + (b.duration_s or 0.0)) for b in bs]
    placed = [(a, a.start_s + offset[a.broadcast_id], a.end_s + offset[a.broadcast_id]) for a in alerts]
    expected = hits = 0
    for sp in SPANS:
        whole = any(lo <= sp["start_s"] - 0.5 and sp["end_s"] + 0.5 <= hi for lo, hi in ranges)
        for cat in (c for c in sp["labels"] if c != "clean"):
            found = {
                a.id
                for a, lo, hi in placed
                if a.category == cat and lo <= sp["end_s"] + 2.0 and hi >= sp["start_s"] - 2.0
            }
            assert len(found) <= 1 or len({a.broadcast_id for a in alerts if a.id in found}) == 1, (
                f"{sp['text']} {cat} alerted in two broadcasts"
            )
            if whole:
                expected += 1
                hits += bool(found)
    print(f"{hits}/{expected} labelled lines recorded whole were alerted")
    assert expected >= 10
    assert hits / expected >= 0.8, f"{hits}/{expected} labelled lines alerted"
    unmatched = [
        a
        for a, lo, hi in placed
        if not any(
            a.category in sp["labels"] and lo <= sp["end_s"] + 2.0 and hi >= sp["start_s"] - 2.0
            for sp in SPANS
        )
    ]
    assert len(unmatched) <= 2, [(a.category, a.text) for a in unmatched]

    for a in alerts:  # playable clips whose bytes match the manifest
        assert a.evidence_status == "done", a.payload
        folder = data / (a.evidence_dir or "")  # stored relative to the data directory
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        for f in manifest["files"]:
            assert sha256_file(folder / f["name"]) == f["sha256"]
        clip = probe(folder / manifest["clip"]["file"])
        assert clip.has_audio and clip.has_video and clip.duration_s >= a.end_s - a.start_s
