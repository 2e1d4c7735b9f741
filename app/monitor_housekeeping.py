"""The monitor's housekeeping thread: the status file, ASR lag warnings, retention, ops notices, and
(with `lease.adopt_expired`) adopting what dead monitors sharing the database left (app/monitor_lease.py).

`Housekeeping` reads the monitor's stage workers and stream table (under the monitor's lock) and
writes `status.json` once a second; it runs retention every `retention_interval_s` through the
database writer. Concurrency: one thread (`run`), plus `status()` and `write_status()` from any thread
(they only read); ops notices (`verified`, `writer_event`, `rules_reload_failed`) come from the threads
that raise them and only post to the webhook outbox.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app import __version__
from app.monitor_resume import adopt_and_resume
from ingest.disk import no_space
from review.evidence_checks import PassResult
from review.monitor_status import STATUS_FILE
from store.retention import apply_retention

if TYPE_CHECKING:
    from app.monitor import Monitor

logger = logging.getLogger(__name__)

_STATUS_ROOM = 8192  # bytes the status may grow by while the disk is full


class Housekeeping:
    """Status file, lag, retention and ops notices of one monitor (see the module docstring)."""

    def __init__(self, mon: Monitor) -> None:
        self.mon = mon
        self._status_write_failed = False
        self._verify_bad: set[tuple[str, str, str]] = set()

    def run(self, stop: threading.Event) -> None:
        mon = self.mon
        next_retention = time.monotonic() + 5.0
        next_adopt = time.monotonic() + mon.cfg.lease.heartbeat_s
        while not stop.wait(1.0 if not mon.cfg.lease.adopt_expired else min(1.0, mon.cfg.lease.heartbeat_s)):
            self.check_lag()
            if mon.cfg.lease.adopt_expired and time.monotonic() >= next_adopt:
                next_adopt = time.monotonic() + mon.cfg.lease.heartbeat_s
                try:
                    adopt_and_resume(mon)
                except Exception:
                    logger.exception("adopting the broadcasts of expired monitors failed")
            try:
                self.write_status()
            except Exception:
                logger.exception("writing the status file failed")
            if time.monotonic() >= next_retention:
                if mon.writer.waiting_for_space:  # its writes would wait behind the held ones: later
                    next_retention = time.monotonic() + 30.0
                    logger.warning("retention postponed: the database is waiting for disk space")
                    continue
                next_retention = time.monotonic() + mon.cfg.retention_interval_s
                try:
                    self.retention()
                except Exception:
                    logger.exception("retention failed")

    def retention(self) -> int:
        mon, cfg = self.mon, self.mon.cfg
        policies = {sid: st.entry.retention.policy() for sid, st in mon.streams.items()}
        quota = None if cfg.disk_quota_gb is None else int(cfg.disk_quota_gb * 1024**3)
        done = apply_retention(
            mon.db,
            policies,
            mon.clock(),
            pre_roll_s=cfg.alerts.pre_roll_s,
            post_roll_s=cfg.alerts.post_roll_s,
            total_max_bytes=quota,
            write=mon.writer.call,
            owner=mon.instance_id,  # another monitor's files are neither counted nor deleted
        )
        return len(done)

    def check_lag(self) -> None:
        mon = self.mon
        now = mon.clock()
        warn = mon.cfg.live_asr.lag_warn_s
        for ctx in mon.asr.active():
            lag = mon.asr.lag_s(ctx, now)
            ctx.max_lag_s = max(ctx.max_lag_s, lag)
            st = mon.streams.get(ctx.stream_id)
            if st is None or ctx.catchup:
                continue
            st.max_lag_s = max(st.max_lag_s, lag)
            if lag > warn and (not st.lagging or time.monotonic() - st.last_lag_warn > 30):
                st.lagging, st.last_lag_warn = True, time.monotonic()
                logger.error(
                    "ASR LAG: stream %s is %.1f s behind the live edge (warn at %.0f s): the machine "
                    "cannot keep up with %d stream(s); alerts are late",
                    ctx.stream_id,
                    lag,
                    warn,
                    len(mon.streams),
                )
            elif st.lagging and lag < warn / 2:
                st.lagging = False
                logger.warning("ASR lag of stream %s recovered (%.1f s)", ctx.stream_id, lag)

    def status(self) -> dict[str, Any]:
        """A snapshot for `livewatch status` and /metrics (see review/monitor_status.py)."""
        mon = self.mon
        now = mon.clock()
        ctxs = {a.broadcast_id: a for a in mon.asr.active()}
        recorders = mon.ingest.snapshot()
        with mon.lock:
            streams: dict[str, Any] = {}
            for sid, st in mon.streams.items():
                rec = recorders.get(sid)
                state = rec.state if rec is not None else None
                bid = rec.broadcast_id if rec is not None else None
                ctx = ctxs.get(bid or "")
                lag = mon.asr.lag_s(ctx, now) if ctx is not None else None
                streams[sid] = {
                    "name": st.entry.name or sid,
                    "url": st.entry.url,
                    "state": state.state if state else "starting",
                    "detail": state.detail if state else "",
                    "state_since_ts": state.since_ts if state else None,
                    "next_try_ts": state.next_try_ts if state else None,
                    "broadcast_id": bid,
                    "broadcast_started_ts": st.broadcast_started_ts if bid else None,
                    "reconnects": rec.reconnects if rec is not None else 0,
                    "asr_lag_s": None if lag is None else round(lag, 2),
                    "max_asr_lag_s": round(st.max_lag_s, 2),
                    "lagging": st.lagging,
                    "alerts": st.alerts,
                }
            catchup = {
                bid: {"stream_id": a.stream_id, "backlog_s": round(mon.asr.lag_s(a, now), 1)}
                for bid, a in ctxs.items()
                if a.catchup
            }
        up = time.monotonic() - mon.stats.started
        video = mon.video
        return {
            "pid": os.getpid(),
            "updated_ts": now,
            "version": __version__,
            "asr": {
                "passes": mon.asr.stats.passes,
                "busy_fraction": round(mon.asr.stats.busy_s / max(up, 1e-9), 3),
                "utterances": mon.asr.stats.utterances,
            },
            "video": None
            if video is None
            else {
                "files": video.stats.files,
                "frames": video.stats.frames,
                "captions": video.stats.captions,
                "visual": video.stats.visual,
                "busy_fraction": round(video.stats.busy_s / max(up, 1e-9), 3),
                **video.queue_status(),  # backlog_files, max_queue, the broadcasts behind
            },
            "analysis_backlog": mon.analysis.backlog,
            "webhooks": None if mon.webhooks is None else mon.webhooks.status(),
            "alerts": mon.stats.alerts,
            "evidence": mon.evidence.stats.evidence,
            "evidence_deferred": mon.evidence.deferred,
            "writer_backlog": mon.writer.backlog,
            "db_writer": mon.writer.status(),
            "streams": streams,
            "catchup": catchup,
            "rules": self.rules_status(),
            "lease": mon.lease.status(),
            "evidence_verify": mon.verifier.status(),
        }

    def rules_status(self) -> dict[str, Any]:
        from detectors.engine import MATCH_STATS

        holders = []
        for h in {id(h): h for h in self.mon.holders.values()}.values():
            get = getattr(h, "status", None)
            if callable(get):
                holders.append(get())
        return {"holders": holders, "matching": MATCH_STATS.snapshot()}

    # -- ops notices ------------------------------------------------------------------------------------

    def verified(self, result: PassResult) -> None:
        """After a verification pass (its thread): evidence files newly found missing or changed, or a
        manifest signature that no longer holds, go to the ops webhook; the log has each file already."""
        bad = set(result.bad)
        new = sorted(bad - self._verify_bad)
        self._verify_bad = bad
        hooks = self.mon.webhooks
        if new and hooks is not None:
            hooks.notify_ops(
                "evidence_not_as_captured",
                message=f"{len(new)} evidence file(s) newly missing or changed",
                files=[{"alert_id": a, "name": n, "state": st} for a, n, st in new[:50]],
                pid=os.getpid(),
            )

    def writer_event(self, event: str, **fields: Any) -> None:
        """The database writer's disk-full / queue-full episodes (it logs them and shows them in its
        status): to the ops webhook."""
        if self.mon.webhooks is not None:
            self.mon.webhooks.notify_ops(event, **fields, pid=os.getpid())

    def rules_reload_failed(self, message: str) -> None:
        """A holder refused a reload (it logged it and keeps the old set): tell the ops webhook now;
        status.json, `livewatch status` and /metrics show it from the holder's state."""
        if self.mon.webhooks is not None:
            self.mon.webhooks.notify_ops("rules_reload_failed", message=message, pid=os.getpid())

    # -- the status file ----------------------------------------------------------------------------------

    def write_status(self, stopped: bool = False) -> None:
        """status.json by an atomic rename; the file is padded with spaces (valid JSON) to whole pages
        plus room, so that on a full disk, where the new copy cannot be written, the status is rewritten
        in place in the space the file already holds, and still shows what is wrong."""
        data = self.status()
        data["running"] = not stopped
        path = self.mon.data_dir / STATUS_FILE
        body = json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8")
        size = -(-(len(body) + _STATUS_ROOM) // 4096) * 4096
        tmp = path.with_suffix(".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(body.ljust(size))
            tmp.replace(path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            if not no_space(e):
                raise
            if not _rewrite_in_place(path, body):
                if not self._status_write_failed:
                    logger.error("status file %s cannot be written: %s", path, e)
                self._status_write_failed = True
                return
            if not self._status_write_failed:
                logger.warning("disk of %s full: the status file is rewritten in place", path)
            self._status_write_failed = True
            return
        self._status_write_failed = False


def _rewrite_in_place(path: Path, body: bytes) -> bool:
    """Overwrite `path` with `body` padded to the file's present size (no new blocks). False if it
    does not fit or the file cannot be opened."""
    try:
        with open(path, "r+b") as f:
            size = os.fstat(f.fileno()).st_size
            if len(body) > size:
                return False
            f.write(body.ljust(size))
        return True
    except OSError:
        return False
