"""The bus's overhead: the same live streams through the in-process monitor and through the bus workers.

    python bench/bench_bus_live.py                     # 5 streams of broadcast_0 (first 60 s), both modes
    python bench/bench_bus_live.py --streams 3 --cut 45 --modes bus

Each mode serves N copies of the corpus broadcast as live HLS on 127.0.0.1 (`ffmpeg -re`, 2 s
segments) and records them end to end with the real Whisper base model and the shipped rule packs:

- ``inproc``: one `livewatch monitor` process (every stage inside it, the embedded default);
- ``bus``: an embedded nats-server and `livewatch worker ingest`, `worker asr` and `worker analyze`,
  one process each, on this machine (the same config plus `bus:`); the ingest worker starts once the
  ASR worker has loaded Whisper and the analyze worker its rules, as the monitor loads its model before
  it records (``--start-all``: all three at once, the audio of the first seconds then waits on the bus).

Both run as subprocesses with the same config, store (SQLite in a fresh data folder each) and media, one
mode after the other. Printed per mode:

- alert latency p50/p95: an alert row's commit time minus when the end of the labelled line it is about
  was broadcast (producer start + the span's end on the media clock), over alerts that match a span;
- ASR lag: for each stored line, its commit time minus when its end was broadcast; max and p95;
- recall against the corpus labels (a check that the modes did the same work);
- CPU seconds of the whole process tree (the monitor, or nats-server + the three workers, with their
  streamlink/ffmpeg children), read from /proc just before the processes are stopped, per stream-minute;
- per hop, p50/p95 over the alerts: where the time from the line said to the alert stored went, from the
  hop stamps the alert's triggering line keeps (asr/timing.py; `HOPS` below), as a markdown table.

and the bus's overhead: CPU ratio bus/inproc (target <= 1.10) and p95 latency difference (target
<= 1 s). The machine is shared: the load average is printed; compare modes within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from live_helpers import HlsServer  # noqa: E402

from app.bus_server import EmbeddedNats  # noqa: E402
from ingest import ffmpeg  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(q * (len(v) - 1))))]


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return out


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process, its live descendants and the children they have reaped."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        total += (utime + stime + cutime + cstime) / TICK
        todo.extend(_children(p))
    return total


def cut(src: Path, dst: Path, seconds: float) -> Path:
    subprocess.run([ffmpeg.ffmpeg_exe(), "-v", "error", "-y", "-i", str(src), "-t", str(seconds), "-c", "copy",
                    str(dst)], check=True)
    return dst


def config(path: Path, data: Path, urls: list[str], bus_url: str | None) -> Path:
    cfg: dict[str, Any] = {
        "data_dir": str(data),
        "streams": [
            {"id": f"s{i}", "url": u, "stall_timeout_s": 8, "hls_live_edge": 1,
             "reconnect": {"initial_s": 1, "max_s": 2}}
            for i, u in enumerate(urls)
        ],
    }
    if bus_url:
        cfg["bus"] = {"url": bus_url, "asr_batch": 8}
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def _settled(db: Path) -> bool:
    if not db.exists():
        return False
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        live = con.execute("select count(*) from broadcasts where status in ('live', 'ended')").fetchone()[0]
        pending = con.execute("select count(*) from alerts where evidence_status = 'pending'").fetchone()[0]
        total = con.execute("select count(*) from broadcasts").fetchone()[0]
        return bool(total) and not live and not pending
    except sqlite3.Error:
        return False
    finally:
        con.close()


# The hops of a line's way from said to alert stored (asr/timing.py's stamps; "said": the end of the labelled
# line on the producer's clock, "alert": the alert row's commit). A hop missing a stamp (the in-process
# monitor has no bus) is left out; the hops of a mode add up to its latency.
HOPS = (
    ("said -> chunk on bus", "said", "sent_ts"),
    ("chunk on bus -> ASR fetched", "sent_ts", "audio_ts"),
    ("said -> audio at ASR", "said", "audio_ts"),
    ("audio at ASR -> decode start", "audio_ts", "decode_start_ts"),
    ("decode (pass or batch)", "decode_start_ts", "decode_end_ts"),
    ("decode end -> committed", "decode_end_ts", "committed_ts"),
    ("committed -> transcript on bus", "committed_ts", "published_ts"),
    ("transcript on bus -> analysis", "published_ts", "received_ts"),
    ("committed -> analysis has it", "committed_ts", "received_ts"),
    ("analysis has it -> alert stored", "received_ts", "alert"),
    ("said -> alert stored", "said", "alert"),
)


def _trigger_line(alert: sqlite3.Row, lines: list[dict[str, Any]], first: tuple[float, float]) -> dict[str, Any] | None:
    """The line whose analysis raised the alert: analysed in the alert's transaction, over its first detection."""
    same = [u for u in lines if abs(float(u["meta"].get("analyzed_ts", -1e9)) - alert["created_ts"]) < 0.5]
    over = [u for u in same if u["start_s"] <= first[1] + 0.5 and u["end_s"] >= first[0] - 0.5]
    pick = over or same
    return max(pick, key=lambda u: u["end_s"]) if pick else None


def measure(db: Path, servers: list[HlsServer], spans: list[dict[str, Any]]) -> dict[str, Any]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    con.row_factory = sqlite3.Row
    try:
        bcs = {r["id"]: r for r in con.execute("select * from broadcasts")}
        alerts = con.execute("select * from alerts where source = 'speech'").fetchall()
        utts = con.execute(
            "select broadcast_id, start_s, end_s, meta from utterances where source = 'speech'"
        ).fetchall()
        firsts = {
            r["alert_id"]: (r["s"], r["e"])
            for r in con.execute(
                "select alert_id, start_s as s, end_s as e from detections d1 where start_s = "
                "(select min(start_s) from detections d2 where d2.alert_id = d1.alert_id)"
            )
        }
    finally:
        con.close()
    lines_of: dict[str, list[dict[str, Any]]] = {}
    for u in utts:
        lines_of.setdefault(u["broadcast_id"], []).append(
            {"start_s": u["start_s"], "end_s": u["end_s"], "meta": json.loads(u["meta"] or "{}")}
        )
    start = {f"s{i}": s.started_ts for i, s in enumerate(servers)}
    lat, hits, clock = [], set(), []
    hops: dict[str, list[float]] = {name: [] for name, _, _ in HOPS}
    for a in alerts:
        b = bcs[a["broadcast_id"]]
        src0 = float(b["source_start_s"] or 0.0)
        lo, hi = a["start_s"] + src0, a["end_s"] + src0
        match = [sp for sp in spans if a["category"] in sp["labels"] and lo <= sp["end_s"] + 2 and hi >= sp["start_s"] - 2]
        t0 = start.get(a["stream_id"])
        if match and t0 is not None:
            sp = min(match, key=lambda sp: abs(sp["end_s"] - hi))
            lat.append(a["created_ts"] - (t0 + sp["end_s"]))
            if a["start_ts"] is not None:  # where the alert places the line on the wall clock, vs when it was said
                clock.append(float(a["start_ts"]) - (t0 + sp["start_s"]))
            hits.add((a["stream_id"], sp["id"], a["category"]))
            line = _trigger_line(a, lines_of.get(a["broadcast_id"], []), firsts.get(a["id"], (a["start_s"], a["end_s"])))
            if line is not None:
                at = {k: float(v) for k, v in line["meta"].items() if k.endswith("_ts")}
                at["said"], at["alert"] = t0 + sp["end_s"], a["created_ts"]
                for name, x, y in HOPS:
                    if x in at and y in at:
                        hops[name].append(at[y] - at[x])
    lags = []
    for u in utts:
        b = bcs[u["broadcast_id"]]
        meta = json.loads(u["meta"] or "{}")
        t0 = start.get(b["stream_id"])
        if "committed_ts" in meta and t0 is not None:
            lags.append(float(meta["committed_ts"]) - (t0 + u["end_s"] + float(b["source_start_s"] or 0.0)))
    labelled = {(f"s{i}", sp["id"], c) for i in range(len(servers)) for sp in spans for c in sp["labels"] if c != "clean"}
    return {
        "alerts": len(alerts),
        "recall": round(len(hits & labelled) / max(1, len(labelled)), 3),
        "latency_p50_s": round(pct(lat, 0.5), 2),
        "latency_p95_s": round(pct(lat, 0.95), 2),
        "asr_lag_p95_s": round(pct(lags, 0.95), 2),
        "start_ts_offset_p50_s": round(pct(clock, 0.5), 2),
        "asr_lag_max_s": round(max(lags, default=float("nan")), 2),
        "lines": len(lags),
        "hops": {name: [round(pct(v, 0.5), 2), round(pct(v, 0.95), 2), len(v)] for name, v in hops.items() if v},
    }


async def _workers_ready(url: str) -> bool:
    """Whether the bus's ASR worker (its lease bucket: made after Whisper is loaded) and analyze worker (its
    consumer: made after its rules and models are loaded) are up."""
    import nats as nats_client

    async def quiet(_e: Exception) -> None:
        return None

    try:
        nc = await asyncio.wait_for(
            nats_client.connect(servers=[url], connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False,
                                error_cb=quiet), 5)
    except Exception:
        return False
    try:
        js = nc.jetstream()
        await js.consumer_info("LW_TRANSCRIPTS", "analyze")
        await js.stream_info("KV_LW_ASR_LEASES")
        return True
    except Exception:
        return False
    finally:
        await nc.close()


def run_mode(mode: str, media: Path, n: int, tmp: Path, spans: list[dict[str, Any]], settle_s: float,
             ready_first: bool = True) -> dict[str, Any]:
    work = tmp / mode
    work.mkdir()
    data = work / "data"
    servers = [HlsServer(media, work / f"hls{i}") for i in range(n)]
    procs: list[subprocess.Popen[bytes]] = []
    nats: EmbeddedNats | None = None
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    logs = (work / "log.txt").open("ab")
    load_start = os.getloadavg()
    try:
        for s in servers:
            s.start()
        if mode == "bus":
            nats = EmbeddedNats(work / "nats").start()
            cfg = config(work / "cfg.yaml", data, [s.url for s in servers], nats.url)
            for stage in ("analyze", "asr", "ingest"):
                if stage == "ingest" and ready_first:
                    # as the monitor loads its model before recording anything: the ingest worker starts
                    # recording once the ASR worker has loaded Whisper and the analyze worker its rules
                    t_ready = time.monotonic()
                    while not asyncio.run(_workers_ready(nats.url)) and time.monotonic() - t_ready < 180:
                        if any(p.poll() is not None for p in procs):
                            raise SystemExit(f"{mode}: a worker exited; see {work / 'log.txt'}")
                        time.sleep(0.5)
                    print(f"bus: ASR and analyze workers ready after {time.monotonic() - t_ready:.1f} s", flush=True)
                procs.append(subprocess.Popen([sys.executable, "-m", "app.cli", "worker", stage, "--config", str(cfg),
                                               "--log-level", "warning"], cwd=ROOT, env=env,
                                              stdout=subprocess.DEVNULL, stderr=logs))
        else:
            cfg = config(work / "cfg.yaml", data, [s.url for s in servers], None)
            procs.append(subprocess.Popen([sys.executable, "-m", "app.cli", "monitor", "--config", str(cfg),
                                           "--log-level", "warning"], cwd=ROOT, env=env,
                                          stdout=subprocess.DEVNULL, stderr=logs))
        loads = []
        while not all(s.finished for s in servers):
            time.sleep(1.0)
            loads.append(os.getloadavg()[0])
            for p in procs:
                if p.poll() is not None:
                    raise SystemExit(f"{mode}: a process exited ({p.returncode}); see {work / 'log.txt'}")
        # the producers' clocks, to measure the store again later (measure())
        (work / "starts.json").write_text(json.dumps({f"s{i}": s.started_ts for i, s in enumerate(servers)}))
        deadline = time.monotonic() + settle_s
        db = data / "livewatch.db"
        while time.monotonic() < deadline and not _settled(db):
            time.sleep(1.0)
        cpu = sum(tree_cpu_s(p.pid) for p in procs)
        if nats is not None and nats.proc is not None:
            cpu += tree_cpu_s(nats.proc.pid)
        out = measure(db, servers, spans)
        out.update({"cpu_s": round(cpu, 1), "settled": _settled(db), "load_mean": round(statistics.mean(loads or [0]), 2),
                    "load_start": [round(x, 2) for x in load_start]})
        return out
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        if nats is not None:
            nats.stop()
        for s in servers:
            s.stop()
        logs.close()


def print_hops(results: dict[str, Any]) -> None:
    """The per-hop table of the modes run: p50 / p95 seconds (and how many alerts had the hop's stamps)."""
    modes = [m for m in results if results[m].get("hops")]
    if not modes:
        return
    print("| hop (per alert, its triggering line) | " + " | ".join(f"{m} p50 / p95 s (n)" for m in modes) + " |")
    print("|---|" + "---|" * len(modes))
    for name, _, _ in HOPS:
        cells = []
        for m in modes:
            h = results[m]["hops"].get(name)
            cells.append(f"{h[0]} / {h[1]} ({h[2]})" if h else "-")
        if any(c != "-" for c in cells):
            print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=5)
    ap.add_argument("--cut", type=float, default=60.0, help="seconds of the broadcast served (0: all)")
    ap.add_argument("--modes", default="inproc,bus")
    ap.add_argument("--settle", type=float, default=90.0, help="most seconds to wait for the last alerts")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--start-all", action="store_true",
                    help="bus: start the ingest worker with the others (not once ASR and analyze are ready)")
    args = ap.parse_args()
    src = ROOT / "examples" / "corpus" / "broadcast_0.mp4"
    truth = json.loads((ROOT / "examples" / "corpus" / "broadcast_0.json").read_text(encoding="utf-8"))
    tmp = Path(tempfile.mkdtemp(prefix="bench_bus_live_"))
    media = cut(src, tmp / "media.mp4", args.cut) if args.cut else src
    spans = [sp for sp in truth["spans"] if not args.cut or sp["end_s"] <= args.cut - 2]
    results: dict[str, Any] = {}
    for mode in args.modes.split(","):
        t0 = time.monotonic()
        results[mode] = run_mode(mode, media, args.streams, tmp, spans, args.settle, not args.start_all)
        results[mode]["wall_s"] = round(time.monotonic() - t0, 1)
        print(f"{mode}: {json.dumps(results[mode])}", flush=True)
    minutes = args.streams * (args.cut or 0) / 60 or None
    if "inproc" in results and "bus" in results:
        a, b = results["inproc"], results["bus"]
        print(f"streams {args.streams} x {args.cut or 'full'} s, cpus {os.cpu_count()}")
        print(f"CPU: inproc {a['cpu_s']} s, bus {b['cpu_s']} s"
              + (f" ({a['cpu_s'] / minutes:.1f} / {b['cpu_s'] / minutes:.1f} s per stream-minute)" if minutes else "")
              + f"; bus/inproc {b['cpu_s'] / a['cpu_s']:.3f} (target <= 1.10)")
        print(f"alert latency p50/p95: inproc {a['latency_p50_s']}/{a['latency_p95_s']} s, bus "
              f"{b['latency_p50_s']}/{b['latency_p95_s']} s; p95 difference "
              f"{b['latency_p95_s'] - a['latency_p95_s']:+.2f} s (target <= +1 s)")
        print(f"ASR lag max: inproc {a['asr_lag_max_s']} s, bus {b['asr_lag_max_s']} s; recall inproc {a['recall']}, "
              f"bus {b['recall']}")
        print(f"alert start_ts minus when the line began, p50: inproc {a['start_ts_offset_p50_s']} s, "
              f"bus {b['start_ts_offset_p50_s']} s (both refine the broadcast's clock from file arrivals)")
    print_hops(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
