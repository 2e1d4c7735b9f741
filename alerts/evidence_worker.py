"""The live evidence worker: closed alerts → the post-roll on disk → the hashed evidence folder.

An alert's evidence is cut once nothing can join the alert any more (the analysis worker reports it
closed) and the recording reaches its post-roll: the files that cover [start - pre-roll, end +
post-roll] are joined, probed and written with the manifest (alerts/evidence.py); the port records
the result in the database. A sweep every 30 s asks the port for alerts still pending although their
transcript is complete past them (a safety net for what a crash or a bug left behind).

A full disk is not a failure: the alert stays stored, its evidence stays pending (retention spares its
recordings) and is retried with a growing backoff (2 s to 60 s) until space is freed; the log, the
alert (`evidence_error`), `deferred` (the monitor's status) and once per episode the ops webhook say
what and where.

Concurrency contract: `put` may be called from any thread (the database writer's after-commit
callbacks, the monitor's resume); it never blocks: the queue is bounded (`max_queue` ids) and an id
that finds it full is dropped with a warning, to be found again by the sweep (its row says pending).
One worker thread owns the pending set and the backoffs and calls the port (whose `record` may block
on the database writer) and ffmpeg; `cut` is also for a caller that owns no worker thread (tests,
tools) while none runs. `deferred` may be read from any thread. On `stop` the worker finishes the
alert in hand and exits; what is pending stays pending in the database for the next start.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from alerts.config import AlertsConfig
from alerts.evidence import EvidenceRequest, alert_payload, sha256_file, write_evidence
from alerts.grouping import context_text
from alerts.types import Alert, Evidence, MediaRef
from asr.types import Utterance
from ingest import ffmpeg
from ingest.disk import no_space

__all__ = ["WAIT", "EvidenceJob", "EvidencePort", "EvidenceWorker", "SegmentFile"]

logger = logging.getLogger(__name__)

WAIT: Literal["wait"] = "wait"  # EvidencePort.job: the post-roll is not on disk yet


@dataclass(frozen=True, slots=True)
class SegmentFile:
    """A recorded file: its path as stored (relative to the data directory) and where it is now."""

    stored: str
    file: Path
    start_s: float
    duration_s: float


@dataclass(frozen=True, slots=True)
class EvidenceJob:
    """Everything one alert's evidence is cut from (the port reads it from the database)."""

    alert: Alert
    segments: tuple[SegmentFile, ...]  # the files covering the alert with its pre- and post-roll
    utterances: tuple[Utterance, ...]  # the broadcast's transcript
    pre_roll_s: float
    post_roll_s: float
    stream: dict[str, Any]  # the stream's description for the manifest
    stream_id: str | None


class EvidencePort(Protocol):
    """What the evidence worker needs of the rest of the monitor (wired by app/monitor.py)."""

    def job(self, alert_id: str) -> EvidenceJob | Literal["wait"] | None:
        """The alert's job; WAIT while its post-roll is not recorded; None when nothing is left to do
        (gone, or its evidence no longer pending)."""
        ...

    def record(self, job: EvidenceJob, evidence: Evidence, payload: dict[str, Any]) -> None:
        """Store the written evidence (blocking; raises when the database cannot take it now)."""
        ...

    def failed(self, alert_id: str, error: str) -> None: ...

    def deferred(self, alert_id: str, error: str) -> None:
        """The evidence waits for disk space (kept on the alert as its `evidence_error`)."""
        ...

    def closed_but_pending(self) -> list[str]: ...

    def notify_ops(self, event: str, **fields: Any) -> None: ...


@dataclass(slots=True)
class EvidenceStats:
    evidence: int = 0
    dropped: int = 0  # ids that found the queue full (the sweep finds them again)


class EvidenceWorker:
    """Cuts closed alerts' evidence; see the module docstring."""

    def __init__(
        self,
        cfg: AlertsConfig,
        port: EvidencePort,
        *,
        evidence_root: Path,
        tmp_dir: Path,
        tool_version: str,
        clock: Callable[[], float] = time.time,
        max_queue: int = 10_000,
        sweep_s: float = 30.0,
    ) -> None:
        self.cfg = cfg
        self.port = port
        self.evidence_root = evidence_root
        self.tmp_dir = tmp_dir
        self.tool_version = tool_version
        self._clock = clock
        self._q: queue.Queue[str] = queue.Queue(max_queue)
        self._sweep_s = sweep_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # evidence that could not be written for want of disk space: alert id -> (retry at, next backoff)
        self._retry: dict[str, tuple[float, float]] = {}
        self._full: dict[str, Any] | None = None  # the latest "disk full" (status, `livewatch status`)
        self.stats = EvidenceStats()

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self, guard: Callable[[Callable[[], None]], Callable[[], None]] | None = None) -> None:
        target = guard(self._loop) if guard is not None else self._loop
        self._thread = threading.Thread(target=target, name="evidence", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def put(self, alert_id: str) -> None:
        try:
            self._q.put_nowait(alert_id)
        except queue.Full:
            self.stats.dropped += 1
            logger.warning("evidence queue full: alert %s is left to the next sweep", alert_id)

    @property
    def deferred(self) -> dict[str, Any] | None:
        """The latest disk-full episode while evidence waits for space, else None."""
        full = self._full
        return None if full is None else dict(full)

    # -- the loop -----------------------------------------------------------------------------------------

    def _loop(self) -> None:
        pending: dict[str, float] = {}
        next_sweep = time.monotonic() + self._sweep_s
        while not self._stop.is_set():
            try:
                while True:
                    pending.setdefault(self._q.get_nowait(), time.monotonic())
            except queue.Empty:
                pass
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self._sweep_s
                for alert_id in self.port.closed_but_pending():
                    pending.setdefault(alert_id, time.monotonic())
            for alert_id in list(pending):
                if self._stop.is_set():
                    return
                retry = self._retry.get(alert_id)
                if retry is not None and time.monotonic() < retry[0]:
                    continue  # deferred for want of disk space: tried again after its backoff
                if self.cut(alert_id):
                    del pending[alert_id]
            self._stop.wait(0.2)

    def cut(self, alert_id: str) -> bool:
        """Cut the evidence if the post-roll is on disk. True when done with this alert (cut or failed)."""
        job = self.port.job(alert_id)
        if job is None:
            return True
        if job == WAIT:
            return False
        assert not isinstance(job, str)
        alert, segs = job.alert, job.segments
        if not segs:
            lo, hi = alert.start_s - job.pre_roll_s, alert.end_s + job.post_roll_s
            logger.error("alert %s: no recording covers %.1f-%.1f s; evidence failed", alert_id, lo, hi)
            self.port.failed(alert_id, "no recording")
            return True
        try:
            ev, payload = self._write(job)
        except Exception as e:
            if no_space(e):
                return self._no_space(alert_id, e)
            logger.exception("alert %s: evidence failed", alert_id)
            self.port.failed(alert_id, str(e)[:500])
            return True
        try:
            self.port.record(job, ev, payload)
        except Exception as e:  # the files are written (and found again); their rows wait for the database
            _, backoff = self._retry.get(alert_id, (0.0, 2.0))
            self._retry[alert_id] = (time.monotonic() + backoff, min(60.0, backoff * 2))
            logger.error(
                "alert %s: evidence written but not yet recorded in the database (%s); retried in %.0f s",
                alert_id,
                e,
                backoff,
            )
            return False
        self.stats.evidence += 1
        if self._retry.pop(alert_id, None) is not None:
            logger.info("alert %s: evidence written after waiting for disk space", alert_id)
            if not self._retry:
                self._full = None
        return True

    def _no_space(self, alert_id: str, exc: BaseException) -> bool:
        """The disk under the evidence (or the data directory's tmp) is full: the alert stays stored, its
        evidence stays pending and is retried with a growing backoff (2 s to 60 s) until space is freed.
        Says what and where in the log, on the alert, in `deferred` and, once per episode, to the ops
        webhook. Returns False."""
        probe = Path(getattr(exc, "filename", None) or self.evidence_root).absolute()
        while not probe.is_dir() and probe != probe.parent:  # a half-written folder is removed already
            probe = probe.parent
        try:
            usage = shutil.disk_usage(probe)
            room = f"{usage.free} of {usage.total} bytes free"
        except OSError:
            room = "free space unknown"
        _, backoff = self._retry.get(alert_id, (0.0, 2.0))
        message = (
            f"no space left on device for the evidence of alert {alert_id} in {probe} ({room}); the alert "
            f"is kept and its evidence retried every {backoff:.0f} s until space is freed ({exc})"
        )[:1000]
        logger.error("%s", message)
        first = not self._retry
        self._retry[alert_id] = (time.monotonic() + backoff, min(60.0, backoff * 2))
        self._full = {
            "alerts": len(self._retry),
            "error": message,
            "where": str(probe),
            "ts": self._clock(),
        }
        self.port.deferred(alert_id, message)
        if first:
            self.port.notify_ops("evidence_disk_full", message=message, where=str(probe))
        return False

    def _write(self, job: EvidenceJob) -> tuple[Evidence, dict[str, Any]]:
        a = self.cfg
        segs: Sequence[SegmentFile] = job.segments
        utts = job.utterances
        same = [u for u in utts if u.source == job.alert.source] or list(utts)
        alert = replace(
            job.alert,
            context=context_text(
                same, job.alert.start_s, job.alert.end_s, a.context_before_s, a.context_after_s
            ),
        )
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        joined = self.tmp_dir / f"{alert.alert_id}.ts"
        try:
            ffmpeg.concat_segments([str(sg.file) for sg in segs], joined)
            info = ffmpeg.probe(joined)
            media = MediaRef(
                str(joined),
                sha256_file(joined),
                joined.stat().st_size,
                segs[0].start_s,
                info.duration_s,
                info.has_video,
            )
            # the manifest names each original as stored (relative to the data directory), hashed where it is
            originals = tuple(
                MediaRef(
                    sg.stored,
                    sha256_file(sg.file),
                    sg.file.stat().st_size,
                    sg.start_s,
                    sg.duration_s,
                    info.has_video,
                )
                for sg in segs
            )
            payload = alert_payload(
                alert, stream_id=job.stream_id, media_path=str(Path(segs[0].stored).parent)
            )
            payload["live"] = True
            ev = write_evidence(
                EvidenceRequest(
                    alert=alert,
                    media=media,
                    originals=originals,
                    utterances=tuple(utts),
                    out_root=self.evidence_root,
                    pre_roll_s=job.pre_roll_s,
                    post_roll_s=job.post_roll_s,
                    snapshot=a.snapshot,
                    tool_version=self.tool_version,
                    stream=job.stream,
                    payload=payload,
                )
            )
        finally:
            joined.unlink(missing_ok=True)
        payload = {
            **payload,
            "evidence_status": "done",
            "evidence": {
                "dir": ev.dir,
                "manifest": str(Path(ev.dir) / "manifest.json"),
                "manifest_sha256": ev.manifest_sha256,
                "files": {f.name: {"kind": f.kind, "sha256": f.sha256, "size": f.size} for f in ev.files},
            },
        }
        return ev, payload
