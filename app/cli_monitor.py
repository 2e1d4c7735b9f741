"""`livewatch monitor --config FILE` and `livewatch status`.

`monitor` runs until Ctrl-C or SIGTERM, then stops cleanly (connections closed, queued writes
committed; unfinished work resumes at the next start). A second Ctrl-C exits at once. Alerts are
logged to stderr as they are raised; `livewatch alerts` and the review app list them.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["monitor_command", "status_command"]

err = Console(stderr=True)


def monitor_command(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Monitor config YAML (see configs/monitor.example.yaml).")
    ],
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Data directory (overrides the config).")
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug | info | warning")] = "info",
) -> None:
    """Monitor live rooms: record, transcribe, alert within seconds, survive drops."""
    from app.monitor import Monitor
    from app.monitor_config import load_monitor_config
    from store.db import Database

    cfg = load_monitor_config(config)
    ddir = cfg.resolved_data_dir(data_dir)
    logging.getLogger().setLevel(getattr(logging, log_level.upper(), logging.INFO))
    for h in logging.getLogger().handlers:
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    db = Database.for_data_dir(ddir, cfg.db_url)
    monitor = Monitor(cfg, db, ddir)
    quit_event = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if quit_event.is_set():
            err.print("livewatch: second interrupt, exiting now")
            raise SystemExit(130)
        err.print(f"livewatch: {signal.Signals(signum).name}: stopping cleanly (again to force)")
        quit_event.set()

    old: dict[signal.Signals, Any] = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        monitor.start()
        names = ", ".join(monitor.stream_ids)
        err.print(f"livewatch: monitoring {names}; data in {ddir}; `livewatch status` shows progress")
        while not quit_event.wait(1.0):
            pass
    finally:
        monitor.stop()
        for s, h in old.items():
            signal.signal(s, h)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _delay(d: Any) -> str:
    """A stream's line delay (review.monitor_status.LineDelay): total, then its hops."""
    if d is None or d.total_s is None:
        return "-"

    def f(v: float | None) -> str:
        return "?" if v is None else f"{v:.1f}"

    bus = "" if d.bus_s is None else f"bus {f(d.bus_s)} + "
    return f"{d.total_s:.1f}s ({bus}ASR {f(d.asr_s)} + analysis {f(d.analysis_s)})"


def status_command(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Monitor (or root) config YAML.")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Data directory.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
    metrics: Annotated[bool, typer.Option("--metrics", help="Prometheus text format.")] = False,
) -> None:
    """Per stream: state, broadcast uptime, reconnects, ASR lag, alerts today; evidence verification."""
    from app.config import ConfigError, RootConfig
    from detectors.yamlsafe import YamlLoadError, load_file
    from review import monitor_status as ms
    from store.db import Database

    where: dict[str, Any] = {}
    if config is not None:  # only where the data is: a monitor or a root config both work
        try:
            raw = load_file(config)[0] or {}
        except OSError as e:
            raise ConfigError(f"{config}: cannot read: {e}") from None
        except YamlLoadError as e:
            raise ConfigError(str(e)) from None
        where = {k: raw[k] for k in ("data_dir", "db_url") if isinstance(raw, dict) and k in raw}
    cfg = RootConfig.model_validate(where)
    ddir = cfg.resolved_data_dir(data_dir)
    db = Database.for_data_dir(ddir, cfg.db_url)
    now = time.time()
    running, rows = ms.stream_statuses(db, ddir, now)
    rules = ms.rules_status(ddir, now)
    verify = ms.verify_status(ddir, now)
    deferred = ms.deferred_status(ddir, now)
    db_write = ms.db_write_status(ddir, now)
    if metrics:
        sys.stdout.write(ms.metrics_text(running, rows, rules, verify, deferred, db_write))
        return
    if as_json:
        sys.stdout.write(
            json.dumps(
                ms.as_json(running, rows, rules, verify, deferred, db_write), ensure_ascii=False, indent=1
            )
            + "\n"
        )
        return
    t = Table(title=f"livewatch monitor: {'running' if running else 'not running'} ({ddir})")
    for col in (
        "stream",
        "state",
        "uptime",
        "reconnects today",
        "gaps today",
        "ASR lag",
        "max lag",
        "line delay",
        "alerts today",
        "served by",
    ):
        t.add_column(col)
    for r in rows:
        lag = "-" if r.asr_lag_s is None else f"{r.asr_lag_s:.1f}s"
        if r.lagging:
            lag = f"[bold red]{lag} LAGGING[/bold red]"
        state = r.state if not r.detail or r.state == "recording" else f"{r.state}: {r.detail[:40]}"
        t.add_row(
            r.stream_id,
            state,
            _age(r.uptime_s),
            str(r.reconnects_today),
            str(r.gaps_today),
            lag,
            "-" if r.max_asr_lag_s is None else f"{r.max_asr_lag_s:.1f}s",
            _delay(r.line_delay),
            str(r.alerts_today),
            "-" if r.served_by is None else f"{r.served_by}{'' if r.server_alive else ' (lease expired)'}",
        )
    console = Console()
    console.print(t)
    for line in (
        ms.rules_problems(rules)
        + ms.verify_problems(verify)
        + ms.deferred_problems(deferred)
        + ms.db_write_problems(db_write)
    ):
        console.print(f"[bold red]{escape(line)}[/bold red]")
    last = (verify or {}).get("last")
    if last and last.get("ok"):
        console.print(
            f"evidence: {last.get('files', 0)} file(s) of {last.get('alerts', 0)} alert(s) as captured"
        )
