"""`livewatch worker STAGE --config FILE`, `livewatch bus publish` and `livewatch dev-cluster`.

A stage worker runs one stage of the pipeline as its own process on the NATS JetStream bus named by the
config's `bus:` (app/bus_config.py). The ingest stage (app/bus_ingest.py: recorders for the config's
`streams:` claimed by lease, audio published on LW_AUDIO, evidence cut where the recordings are), the
ASR stage (app/bus_asr.py, app/bus_asr_run.py) and the analyze stage (app/bus_analyze.py) run on the
bus; evidence is the ingest worker's job (`worker evidence` says so). `bus publish-audio` puts a media
file's audio on the bus in chunks (app/bus_audio.py), as an ingest worker does for a live room; `bus
publish` puts a stored transcript on the bus in batches (app/bus_publish.py), standing in for the ASR
worker's output. `dev-cluster` starts an embedded nats-server and N analyze workers (and M ASR, K
ingest workers) on this machine until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from app.errors import UsageError

__all__ = ["bus_app", "dev_cluster_command", "load_worker_config", "worker_command"]

err = Console(stderr=True)
STAGES = ("ingest", "asr", "analyze", "evidence")
ON_BUS = ("ingest", "asr", "analyze")

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Root or monitor config YAML with `bus:`.")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (overrides the config).")]
BusOpt = Annotated[str | None, typer.Option("--bus", help="NATS URL (overrides the config's bus: url).")]
LogOpt = Annotated[str, typer.Option("--log-level", help="debug | info | warning")]


def load_worker_config(path: Path, bus: str | None = None, *, require_bus: bool = True) -> Any:
    """A monitor config (it has `streams:`: per-stream rule packs, rolls, webhooks) or a root config,
    with `bus:` required (or given with --bus)."""
    from app.config import load_config
    from app.monitor_config import load_monitor_config

    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from None
    cfg = load_monitor_config(path) if re.search(r"^streams\s*:", text, re.M) else load_config(path)
    if bus is not None:
        from app.bus_config import BusSection

        section = cfg.bus.model_copy(update={"url": bus}) if cfg.bus is not None else BusSection(url=bus)
        cfg = cfg.model_copy(update={"bus": section})
    if cfg.bus is None and require_bus:
        raise UsageError(
            f"{path}: a stage worker needs a bus: add `bus: nats://HOST:4222` (NATS with JetStream on) to the "
            "config, or pass --bus; without a bus, `livewatch monitor` runs every stage in one process"
        )
    return cfg


def _logging(level: str) -> None:
    logging.getLogger().setLevel(getattr(logging, level.upper(), logging.INFO))
    for h in logging.getLogger().handlers:
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))


def worker_command(
    stage: Annotated[str, typer.Argument(help="ingest | asr | analyze | evidence")],
    config: ConfigOpt,
    data_dir: DataDirOpt = None,
    bus: BusOpt = None,
    log_level: LogOpt = "info",
) -> None:
    """Run one stage of the pipeline as its own process on the bus (ingest, asr, analyze).

    ingest: records the config's `streams:` it claims (a lease per stream, LW_INGEST_LEASES, at most
    bus.ingest_max_streams; a dead worker's streams are claimed by another after bus.ingest_lease_s),
    publishes their audio as 16 kHz chunks on LW_AUDIO, cuts the evidence of their alerts and then posts
    their webhooks; the recordings stay on its disk.
    asr: claims streams whose audio waits on LW_AUDIO (a lease per stream, at most bus.asr_max_streams),
    transcribes each broadcast with the monitor's sliding window (on a GPU the ready windows of all its
    streams as one batch: bus.asr_batch, bus.asr_batch_wait_ms; on the CPU one at a time, furthest behind
    first), stores the lines and publishes the batches on LW_TRANSCRIPTS; one per GPU or CPU box.
    analyze: loads the rules and the semantic model, then pulls those batches, raises and stores the
    alerts; as many as you like."""
    if stage not in STAGES:
        raise UsageError(f"unknown stage '{stage}': one of {', '.join(STAGES)}")
    if stage not in ON_BUS:
        raise UsageError(
            f"the {stage} stage has no worker of its own on the bus: evidence is cut by the ingest workers, "
            "where the recordings are (`livewatch worker ingest`); without a bus it runs inside `livewatch "
            "monitor`"
        )
    cfg = load_worker_config(config, bus)
    _logging(log_level)
    from store.db import Database

    db = Database.for_data_dir(cfg.resolved_data_dir(data_dir), cfg.db_url)
    try:
        if stage == "ingest":
            from app.bus_ingest import IngestRunner, run_ingest_worker
            from app.monitor_config import MonitorConfig

            if not isinstance(cfg, MonitorConfig):
                raise UsageError(f"{config}: the ingest worker records the config's `streams:`; it has none")
            asyncio.run(run_ingest_worker(IngestRunner(cfg, db, cfg.resolved_data_dir(data_dir))))
        elif stage == "asr":
            from app.bus_asr_run import build_asr, run_asr_worker

            # faster-whisper logs every window at info
            logging.getLogger("faster_whisper").setLevel(max(logging.WARNING, logging.getLogger().level))
            asyncio.run(run_asr_worker(build_asr(cfg, db), cfg.bus))
        else:
            from app.bus_analyze import build_analyzer, run_analyze_worker

            asyncio.run(run_analyze_worker(build_analyzer(cfg, db), cfg.bus))
    finally:
        db.dispose()


bus_app = typer.Typer(
    help="Put work on the bus by hand (a media file or a transcript instead of a live room).",
    no_args_is_help=True,
)


@bus_app.command("publish")
def publish_command(
    transcript: Annotated[
        Path, typer.Argument(help="Transcript JSON ({'segments': [...]}, as scan/ASR write).")
    ],
    config: ConfigOpt,
    stream: Annotated[str, typer.Option("--stream", help="Stream id the broadcast belongs to.")],
    data_dir: DataDirOpt = None,
    bus: BusOpt = None,
    lines: Annotated[int, typer.Option("--lines", min=1, help="Lines per batch (an ASR pass's commit).")] = 3,
    broadcast_id: Annotated[
        str | None, typer.Option("--broadcast-id", help="Default: from the file.")
    ] = None,
    started_at: Annotated[
        str | None, typer.Option("--started-at", help="Wall clock of 0 s (ISO or epoch).")
    ] = None,
) -> None:
    """Store a transcript as a live broadcast's and publish it in batches for the analyze workers
    (stands in for the ASR worker's output until ASR runs on the bus)."""
    from app.bus_publish import PublishOptions, publish_transcript, transcript_broadcast_id
    from app.cli import parse_time
    from detectors.evaluate import load_transcript
    from store.db import Database

    cfg = load_worker_config(config, bus)
    if not transcript.is_file():
        raise UsageError(f"{transcript}: no such file")
    try:
        utts = load_transcript(transcript)
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{transcript}: not a transcript JSON ({type(e).__name__}: {e})") from None
    db = Database.for_data_dir(cfg.resolved_data_dir(data_dir), cfg.db_url)
    opts = PublishOptions(
        stream_id=stream,
        broadcast_id=broadcast_id or transcript_broadcast_id(transcript, stream),
        started_ts=parse_time(started_at) or time.time(),
        lines_per_batch=lines,
        url=str(transcript.resolve()),
    )
    n = asyncio.run(publish_transcript(cfg.bus, db, utts, opts))
    err.print(f"broadcast {opts.broadcast_id}: {len(utts)} lines published in {n} batch(es)")


@bus_app.command("publish-audio")
def publish_audio_command(
    media: Annotated[Path, typer.Argument(help="Any media file ffmpeg reads (its audio is published).")],
    config: ConfigOpt,
    stream: Annotated[str, typer.Option("--stream", help="Stream id the broadcast belongs to.")],
    data_dir: DataDirOpt = None,
    bus: BusOpt = None,
    realtime: Annotated[
        bool, typer.Option("--realtime", help="Publish at the media's own speed, as a live room sends it.")
    ] = False,
    chunk_s: Annotated[
        float, typer.Option("--chunk-s", min=0.1, max=10, help="Seconds of audio a chunk.")
    ] = 1.0,
    broadcast_id: Annotated[
        str | None, typer.Option("--broadcast-id", help="Default: from the file and stream.")
    ] = None,
    started_at: Annotated[
        str | None, typer.Option("--started-at", help="Wall clock of 0 s (ISO or epoch; default: now).")
    ] = None,
) -> None:
    """Store a media file as a live broadcast and publish its audio in 16 kHz PCM chunks for the ASR
    workers (stands in for an ingest worker until recorders run on the bus)."""
    from app.bus_audio import AudioPublishOptions, media_broadcast_id, publish_audio
    from app.cli import parse_time
    from store.db import Database

    cfg = load_worker_config(config, bus)
    if not media.is_file():
        raise UsageError(f"{media}: no such file")
    db = Database.for_data_dir(cfg.resolved_data_dir(data_dir), cfg.db_url)
    opts = AudioPublishOptions(
        stream_id=stream,
        broadcast_id=broadcast_id or media_broadcast_id(media, stream),
        started_ts=parse_time(started_at) or time.time(),
        chunk_s=chunk_s,
        realtime=realtime,
        url=str(media.resolve()),
    )
    try:
        n = asyncio.run(publish_audio(cfg.bus, db, media, opts))
    except RuntimeError as e:
        raise UsageError(str(e)) from None
    finally:
        db.dispose()
    err.print(f"broadcast {opts.broadcast_id}: {n} audio chunk(s) published on stream {stream}")


@bus_app.command("status")
def bus_status_command(
    config: ConfigOpt,
    bus: BusOpt = None,
    data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    timeout_s: Annotated[float, typer.Option("--timeout", min=0.5, max=60, help="Seconds to reach the bus.")] = 5.0,
    no_store: Annotated[
        bool, typer.Option("--no-store", help="Do not read the store (no webhook counts).")
    ] = False,
) -> None:
    """Every stream on the bus: the workers (and boxes) serving it, ASR lag and backlog, work waiting
    (audio, transcript and video batches), and from the store its webhook rows pending and failed.
    A stream with audio waiting and no ASR worker is shown as waiting for ASR (admission control:
    every ASR worker is full or behind); exit status 3 when one is."""
    import json

    from rich.table import Table

    from app.bus_status import BusUnreachable, bus_status

    cfg = load_worker_config(config, bus)
    hooks, store = (None, None) if no_store else _webhook_backlog(cfg, data_dir)
    try:
        st = asyncio.run(bus_status(cfg.bus, timeout_s=timeout_s, webhooks=hooks, store=store))
    except BusUnreachable as e:
        raise UsageError(str(e)) from None
    waiting = [r.token for r in st.streams if r.state == "waiting for ASR"]
    if as_json:
        typer.echo(json.dumps(st.as_json(), ensure_ascii=False, indent=1))
    else:
        out = Console()
        t = Table(title=f"bus {st.url}: {len(st.streams)} stream(s)")
        for col in ("stream", "state", "served by", "ASR lag s", "ASR backlog s", "audio chunks waiting",
                    "batches waiting", "video batches waiting", "webhooks pending", "webhooks failed"):
            t.add_column(col)
        for r in st.streams:
            served = "; ".join(
                f"{stage}: {v.get('worker', '?')}@{v.get('host', '?')} pid {v.get('pid', '?')}"
                for stage, v in r.leases.items()
            )
            asr = r.leases.get("asr", {})
            t.add_row(r.token, r.state, served or "-", str(asr.get("lag_s", "-")), str(asr.get("backlog_s", "-")),
                      str(r.audio_waiting), str(r.transcripts_waiting), str(r.video_waiting),
                      _count(r.webhooks_pending), _count(r.webhooks_failed))
        out.print(t)
        if st.analyze_pending is not None:
            out.print(f"analyze: {st.analyze_pending} batch(es) pending, {st.analyze_in_flight} in flight")
        if st.video_pending is not None:
            out.print(f"analyze video: {st.video_pending} batch(es) pending, {st.video_in_flight} in flight")
        if st.store is None:
            out.print("webhooks: the store was not read (--no-store, or no database here)")
        else:
            failed = sum(r.webhooks_failed or 0 for r in st.streams)
            if failed:
                out.print(f"[yellow]{failed} webhook delivery(ies) given up (store {st.store})[/yellow]")
        if waiting:
            out.print(f"[yellow]{len(waiting)} stream(s) wait for ASR capacity: {', '.join(waiting)}[/yellow]")
    if waiting:
        raise typer.Exit(3)


def _count(n: int | None) -> str:
    return "-" if n is None else str(n)


def _webhook_backlog(cfg: Any, data_dir: Path | None) -> tuple[dict[str, tuple[int, int]] | None, str | None]:
    """The store's webhook rows per stream token, and which store (None, None when there is none here:
    `bus status` opens an existing database only, never creates one)."""
    import os

    from sqlalchemy.engine import make_url

    from app.bus_status import webhook_backlog
    from store.db import Database

    url = cfg.db_url or os.environ.get("LIVEWATCH_DB_URL")
    if not url:
        path = cfg.resolved_data_dir(data_dir) / "livewatch.db"
        if not path.is_file():
            return None, None
        url = f"sqlite:///{path.resolve()}"
    hooks = list(getattr(cfg, "webhooks", None) or [])
    try:
        db = Database(url, cfg.resolved_data_dir(data_dir))
    except Exception as e:  # the bus is still worth showing
        err.print(f"[yellow]store not read ({type(e).__name__}: {e}); no webhook counts[/yellow]")
        return None, None
    try:
        return webhook_backlog(db, hooks), make_url(url).render_as_string(hide_password=True)
    finally:
        db.dispose()


def dev_cluster_command(
    config: ConfigOpt,
    workers: Annotated[int, typer.Option("--workers", "-n", min=1, help="Analyze workers to start.")] = 2,
    asr_workers: Annotated[int, typer.Option("--asr", min=0, help="ASR workers to start.")] = 0,
    ingest_workers: Annotated[
        int,
        typer.Option("--ingest", min=0, help="Ingest workers to start (they record the config's streams)."),
    ] = 0,
    data_dir: DataDirOpt = None,
    port: Annotated[int, typer.Option("--port", help="NATS port on 127.0.0.1 (0: a free one).")] = 4222,
    log_level: LogOpt = "info",
) -> None:
    """An embedded nats-server (JetStream), N analyze, M ASR and K ingest workers on this machine, until Ctrl-C.

    The database is the config's (db_url, else SQLite in the data directory); publish with
    `livewatch bus publish-audio MEDIA --stream ID --config FILE --bus URL` (audio, for the ASR workers)
    or `livewatch bus publish FILE --stream ID --config FILE --bus URL` (a transcript)."""
    from app.bus_server import EmbeddedNats, free_port

    cfg = load_worker_config(config, require_bus=False)
    ddir = cfg.resolved_data_dir(data_dir)
    server = EmbeddedNats(ddir / "nats", port=port or free_port()).start()
    err.print(f"nats-server (JetStream) on {server.url}; store {server.store_dir}")

    def cmd(stage: str) -> list[str]:
        c = [sys.executable, "-m", "app.cli", "worker", stage, "--config", str(config), "--bus", server.url]
        c += ["--log-level", log_level]
        return c + (["--data-dir", str(data_dir)] if data_dir is not None else [])

    stages = ["analyze"] * workers + ["asr"] * asr_workers + ["ingest"] * ingest_workers
    procs = [subprocess.Popen(cmd(st)) for st in stages]
    err.print(
        f"{workers} analyze, {asr_workers} ASR and {ingest_workers} ingest worker(s): pids {', '.join(str(p.pid) for p in procs)}; "
        "Ctrl-C stops all"
    )
    stop = False

    def on_signal(_signum: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        while not stop:
            for i, p in enumerate(procs):
                if p.poll() is not None:
                    err.print(f"{stages[i]} worker {p.pid} exited ({p.returncode}); starting another")
                    procs[i] = subprocess.Popen(cmd(stages[i]))
            time.sleep(0.5)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        server.stop()
        err.print("dev cluster stopped")
