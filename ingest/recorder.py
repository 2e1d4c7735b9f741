"""Continuous recording of one live stream into copy-codec MPEG-TS files, with reconnects.

One `Recorder` per stream. It runs one thread that owns the stream's subprocesses: either
`streamlink --stdout URL QUALITY | ffmpeg -i pipe:0 ...` (platform room URLs, `hls://...`) or ffmpeg
alone (rtmp://, http(s) FLV/TS, a local file replayed as if live with `-re`). ffmpeg's segment muxer
writes `seg_000000.ts, seg_000001.ts, ...` and appends a line to `segments.csv` as each file completes.

The thread polls that folder: it announces a broadcast when the first bytes land, each finished file
as a `SegmentRecorded`, and the end of the connection as a `BroadcastEnded`. A drop, a stall (no new
bytes for `stall_timeout_s`) or an offline room ends the broadcast; the recorder then retries with
exponential backoff, and every connection that delivers data is a new broadcast in its own folder, so
a gap between two broadcasts is always visible. The reconnect policy is ours: streamlink's own retry
options are not used.

Rejoining HLS without holes: streamlink runs through `ingest.hls_join`, which reports each HLS media
sequence number that reached the output. After a drop the next connection asks to start right after
the last one recorded; the playlist usually still holds the missed segments, so a drop shorter than the
playlist window loses no media (see ingest/hls_join.py for why sequence numbers and not streamlink's or
ffmpeg's time/edge offsets). What the new connection still lost is measured on the source's own clock
(ffmpeg's input start time, i.e. the stream's PTS) and sent as `BroadcastStarted.media_gap_s`, so the
stored gap is the hole in the media, not the time between noticing the drop and reconnecting.

Concurrency contract: the sink's methods are called from the recorder's thread, in order, one at a
time (started → segments → ended, then the next broadcast). `stop()` may be called from any thread;
it ends the connection gracefully (ffmpeg finishes and lists its last file) and joins the thread.
Subprocesses get SIGTERM when the recorder thread's process dies (Linux PR_SET_PDEATHSIG), so a
monitor killed with SIGKILL leaves no recorder writing on; they also run in their own session, so a
Ctrl-C in the terminal reaches the monitor, which stops them in order.
"""

from __future__ import annotations

import collections
import csv
import errno
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Protocol
from urllib.parse import urlsplit

from ingest import ffmpeg
from ingest.config import BackoffConfig, IngestConfig
from ingest.hls_join import parse_marker
from ingest.types import (
    BroadcastEnded,
    BroadcastStarted,
    HlsJoin,
    IngestState,
    MediaSegment,
    RecorderResume,
    SegmentRecorded,
)

__all__ = [
    "Recorder",
    "RecorderSink",
    "backoff_delay",
    "choose_via",
    "media_gap",
    "new_broadcast_id",
    "read_segment_list",
    "streamlink_args",
]

logger = logging.getLogger(__name__)

_DIRECT_SCHEMES = ("rtmp", "rtmps", "rtmpt", "rtsp", "rtsps", "srt", "udp", "tcp", "file")
_DIRECT_SUFFIXES = (".flv", ".ts", ".mp4", ".mkv", ".m2ts")
_START_RE = re.compile(r"Duration: .*?, start: (-?\d+(?:\.\d+)?)")
_POLL_S = 0.1
_SOURCE_CLOCK_WAIT_S = 2.0


class RecorderSink(Protocol):
    """Receives a recorder's events, on the recorder's thread, in order."""

    def broadcast_started(self, event: BroadcastStarted) -> None: ...
    def segment_recorded(self, event: SegmentRecorded) -> None: ...
    def broadcast_ended(self, event: BroadcastEnded) -> None: ...
    def state_changed(self, event: IngestState) -> None: ...


def backoff_delay(attempt: int, cfg: BackoffConfig) -> float:
    """Seconds to wait before reconnect attempt `attempt` (0 = first retry). Pure."""
    return float(min(cfg.max_s, cfg.initial_s * cfg.factor ** max(0, attempt)))


def choose_via(url: str, via: str = "auto") -> str:
    """'ffmpeg' or 'streamlink' for a source URL (see `IngestConfig.via`). Pure."""
    if via != "auto":
        return via
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if not scheme or len(scheme) == 1:  # a path (or a Windows drive letter)
        return "ffmpeg"
    if scheme in _DIRECT_SCHEMES:
        return "ffmpeg"
    if scheme in ("http", "https") and parts.path.lower().endswith(_DIRECT_SUFFIXES):
        return "ffmpeg"
    return "streamlink"


def is_local_file(url: str) -> bool:
    scheme = urlsplit(url).scheme.lower()
    return not scheme or len(scheme) == 1 or scheme == "file"


def streamlink_args(
    url: str, cfg: IngestConfig, resume_after: int | None = None, wait_s: float | None = None
) -> list[str]:
    """streamlink writing the stream to stdout (run with this interpreter, so the venv's copy is used).

    It runs through `ingest.hls_join` (streamlink's CLI plus HLS rejoin and sequence reporting);
    `resume_after`: the last HLS media sequence number already recorded; `wait_s`: keep polling a
    stream that does not answer for up to this long (a rejoin after a drop) instead of exiting.
    """
    args = [sys.executable, "-m", "ingest.hls_join", "--poll", f"{cfg.hls_poll_s:g}"]
    if resume_after is not None:
        args += ["--resume-after", str(resume_after)]
    if wait_s is not None and wait_s > 0:
        args += ["--wait", f"{wait_s:.1f}"]
    args += [
        "--stdout",
        "--loglevel",
        "info",
        "--stream-timeout",
        f"{cfg.stall_timeout_s:g}",
        "--hls-live-edge",
        str(cfg.hls_live_edge),
    ]
    if cfg.hls_playlist_reload_s is not None:
        args += ["--hls-playlist-reload-time", f"{cfg.hls_playlist_reload_s:g}"]
    for k, v in cfg.http_headers.items():
        args += ["--http-header", f"{k}={v}"]
    for k, v in cfg.http_cookies.items():
        args += ["--http-cookie", f"{k}={v}"]
    if cfg.cookies_file is not None:
        args += ["--http-cookies-file", str(cfg.cookies_file)]
    args += [*cfg.streamlink_args, url, cfg.quality]
    return args


def media_gap(prev_end_s: float | None, start_s: float | None, wall_elapsed_s: float) -> float | None:
    """Seconds of media between the last recording's end and the next one's start, on the source's clock.

    Pure. 0 when they meet or overlap (an overlap is media recorded twice, not a hole). None when a
    clock is unknown or not continuous: a clock that went back by more than two minutes was reset (a
    new session), and one that ran ahead of the wall clock by more than two minutes cannot be the same
    clock (media is not made faster than real time; two minutes cover the player's distance from
    the live edge).
    """
    if prev_end_s is None or start_s is None:
        return None
    gap = start_s - prev_end_s
    if gap < -120.0 or gap > max(0.0, wall_elapsed_s) + 120.0:
        return None
    return max(0.0, gap)


def new_broadcast_id(stream_id: str, now_ts: float) -> str:
    """Readable and unique: '<stream>-20260101T120000Z-<4 hex>'."""
    stamp = datetime.fromtimestamp(now_ts, UTC).strftime("%Y%m%dT%H%M%SZ")
    salt = hashlib.sha256(f"{stream_id}|{now_ts!r}|{time.perf_counter_ns()}".encode()).hexdigest()[:4]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", stream_id)[:60]
    return f"{safe}-{stamp}-{salt}"


def read_segment_list(path: Path) -> list[tuple[str, float, float]]:
    """(file name, start_s, end_s) for each complete line of ffmpeg's CSV segment list."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # a line still being written
    out = []
    for row in csv.reader(text.splitlines()):
        if len(row) >= 3:
            try:
                out.append((row[0], float(row[1]), float(row[2])))
            except ValueError:
                logger.warning("%s: unreadable segment list line %r", path, row)
    return out


# -- subprocesses ----------------------------------------------------------------------------------------


# A child must not outlive a monitor killed with SIGKILL (a restarted monitor would record the room twice):
# it asks the kernel for SIGTERM when the thread that started it dies (PR_SET_PDEATHSIG). This is set by
# a launcher that execs the program (same pid), not by a `preexec_fn`: a `preexec_fn` makes CPython
# fork() (not vfork()) while holding the GIL, which runs the libraries' fork handlers in the recording
# thread, and OpenBLAS's handler waits for its worker threads, which can wait for a BLAS call of the ASR
# thread, which waits for the GIL: the whole monitor froze, signals included. Without a `preexec_fn`
# CPython uses vfork(), which runs no fork handlers.
_PDEATHSIG_LAUNCHER = (
    "import ctypes, os, sys\n"
    "ctypes.CDLL(None).prctl(1, 15)\n"  # PR_SET_PDEATHSIG, SIGTERM
    "if os.getppid() == 1:\n"  # the monitor died before prctl
    "    sys.exit(143)\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


def _with_pdeathsig(args: list[str], setpriv: str | None) -> list[str]:
    """`args` run so that the program gets SIGTERM when the starting thread dies (Linux; elsewhere as is).
    The program is looked up here, so a missing one raises FileNotFoundError as Popen would."""
    if not sys.platform.startswith("linux"):
        return args
    exe = shutil.which(args[0])
    if exe is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), args[0])
    if setpriv is not None:  # util-linux: prctl, then exec, in C
        return [setpriv, "--pdeathsig", "TERM", "--", exe, *args[1:]]
    return [sys.executable, "-S", "-c", _PDEATHSIG_LAUNCHER, exe, *args[1:]]


_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None


class _Proc:
    """A subprocess whose stderr is read by a thread into a short tail (and logged at debug)."""

    def __init__(
        self,
        name: str,
        args: list[str],
        *,
        stdin: IO[bytes] | int | None = None,
        stdout: int | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.tail: collections.deque[str] = collections.deque(maxlen=20)
        logger.debug("starting %s: %s", name, " ".join(args))
        self.popen = subprocess.Popen(
            _with_pdeathsig(args, _SETPRIV),
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            start_new_session=True,
            # no preexec_fn: see _with_pdeathsig
        )
        self._on_line = on_line
        self._reader = threading.Thread(target=self._read, name=f"{name}-stderr", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stderr is not None
        for raw in self.popen.stderr:
            line = raw.decode("utf-8", errors="replace").rstrip()
            if not line:
                continue
            self.tail.append(line)
            logger.debug("%s[%s]: %s", self.name, self.popen.pid, line)
            if self._on_line is not None:
                self._on_line(line)

    def poll(self) -> int | None:
        return self.popen.poll()

    def stop(self, grace_s: float) -> None:
        """SIGTERM, wait up to `grace_s`, then SIGKILL. Idempotent."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "%s[%s] did not stop in %.0f s; killing it", self.name, self.popen.pid, grace_s
                )
                self.popen.kill()
                self.popen.wait()
        self._reader.join(timeout=2.0)

    def error_summary(self) -> str:
        interesting = [ln for ln in self.tail if not ln.startswith(("  ", "Stream #", "Input #", "Output #"))]
        return " | ".join(interesting[-3:])


class _HlsLog:
    """What `ingest.hls_join` said on streamlink's stderr (written by its reader thread)."""

    def __init__(self) -> None:
        self.join: HlsJoin | None = None
        self.last_done: int | None = None
        self.waiting = False  # polling a stream that does not answer (until it joins)

    def on_line(self, line: str) -> None:
        m = parse_marker(line)
        if m is None:
            return
        if m.kind == "done" and m.seq is not None:
            self.last_done = m.seq if self.last_done is None else max(self.last_done, m.seq)
        elif m.kind == "join" and m.first is not None and m.last is not None and m.start is not None:
            self.join = HlsJoin(m.first, m.last, m.start, m.resume_after)
        elif m.kind == "waiting":
            self.waiting = True
        elif m.kind == "unsupported":
            logger.warning("HLS rejoin unavailable (%s): reconnects join at the live edge", m.detail)


@dataclass(slots=True)
class _Attempt:
    broadcast_id: str | None = None  # set once data flowed
    end_s: float = 0.0
    reason: str = ""
    finished: bool = False  # the source ended by itself (a replayed file)
    recorded_s: float = 0.0


class Recorder:
    """Records one stream until stopped; see the module docstring for the threading contract."""

    def __init__(
        self,
        stream_id: str,
        url: str,
        cfg: IngestConfig,
        root: Path,
        sink: RecorderSink,
        *,
        keep_video: bool,
        loop_files: bool = False,
        clock: Callable[[], float] = time.time,
        resume: RecorderResume | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.url = url
        self.cfg = cfg
        self.root = Path(root)
        self.sink = sink
        self.keep_video = keep_video
        self.loop_files = loop_files
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.via = choose_via(url, cfg.via)
        self.reconnects = 0  # connections after the first one that delivered data
        self._last_source_end: float | None = None  # source clock at the end of the last broadcast
        self._last_end_ts: float | None = None  # wall clock of the last broadcast's last data
        self._hls_last_done: int | None = None  # HLS media sequence number of the last recorded segment
        if resume is not None:  # a previous run of the monitor recorded this stream
            self._hls_last_done = resume.hls_last_seq
            self._last_source_end = resume.source_end_s
            self._last_end_ts = resume.end_ts
        # the HLS sequence number reported when the last file reached the disk (an output that could
        # not write, a full disk, got data it did not record: the next connection asks from here)
        self._hls_on_disk: int | None = self._hls_last_done
        self._cur_hls: _HlsLog | None = None  # the running connection's

    # -- public --------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("recorder already started")
        self._thread = threading.Thread(target=self._run, name=f"recorder-{self.stream_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.error("recorder %s did not stop within %.0f s", self.stream_id, timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- loop ----------------------------------------------------------------------------------------

    def _state(
        self, state: str, detail: str = "", attempt: int = 0, next_try_ts: float | None = None
    ) -> None:
        self.sink.state_changed(
            IngestState(self.stream_id, state, detail, self._clock(), attempt, next_try_ts)
        )

    def _run(self) -> None:
        attempt = 0
        had_data = False
        try:
            while not self._stop.is_set():
                self._state("connecting", self.url, attempt)
                result = self._record_once()
                if result.broadcast_id is not None:
                    if had_data:
                        self.reconnects += 1
                    had_data = True
                if self._stop.is_set():
                    break
                if result.finished and not self.loop_files:
                    self._state("finished", result.reason)
                    return
                if result.recorded_s >= self.cfg.reconnect.reset_after_s:
                    attempt = 0
                delay = 0.0 if result.finished else backoff_delay(attempt, self.cfg.reconnect)
                if (
                    self._last_end_ts is not None
                    and self._clock() - self._last_end_ts < self.cfg.reconnect.rejoin_window_s
                ):
                    delay = min(delay, self.cfg.reconnect.initial_s)
                attempt += 1
                state = "reconnecting" if result.broadcast_id is not None else "offline"
                logger.warning(
                    "stream %s %s (%s); retrying in %.1f s",
                    self.stream_id,
                    "dropped" if state == "reconnecting" else "offline",
                    result.reason,
                    delay,
                )
                self._state(state, result.reason, attempt, self._clock() + delay)
                self._stop.wait(delay)
        except Exception:
            logger.exception("recorder %s failed", self.stream_id)
            self._state("failed", "internal error; see log")
            raise
        self._state("stopped")

    def _record_once(self) -> _Attempt:
        now = self._clock()
        broadcast_id = new_broadcast_id(self.stream_id, now)
        folder = self.root / self.stream_id / broadcast_id
        folder.mkdir(parents=True, exist_ok=True)
        source_start: list[float] = []

        out_full: list[str] = []

        def on_ffmpeg_line(line: str) -> None:
            m = _START_RE.search(line)
            if m and not source_start:
                source_start.append(float(m.group(1)))
            if not out_full and ("No space left on device" in line or "Disk quota exceeded" in line):
                out_full.append(line.strip()[:200])

        local = is_local_file(self.url)
        procs: list[_Proc] = []
        hls = _HlsLog()
        self._cur_hls = hls
        wait_s: float | None = None
        try:
            if self.via == "streamlink":
                resume = self._hls_last_done if self.cfg.hls_rejoin else None
                wait_s = self._rejoin_wait_s(now) if resume is not None else None
                sl = _Proc(
                    f"streamlink-{self.stream_id}",
                    streamlink_args(self.url, self.cfg, resume, wait_s),
                    stdout=subprocess.PIPE,
                    on_line=hls.on_line,
                )
                procs.append(sl)
                assert sl.popen.stdout is not None
                cmd = ffmpeg.RecordCommand("pipe:0", folder, self.cfg.segment_s, self.keep_video)
                procs.append(
                    _Proc(
                        f"ffmpeg-{self.stream_id}",
                        ffmpeg.record_segments_args(cmd),
                        stdin=sl.popen.stdout,
                        on_line=on_ffmpeg_line,
                    )
                )
                sl.popen.stdout.close()  # ffmpeg holds the read end now
            else:
                src = self.url[len("file://") :] if self.url.startswith("file://") else self.url
                cmd = ffmpeg.RecordCommand(
                    src,
                    folder,
                    self.cfg.segment_s,
                    self.keep_video,
                    realtime=local and self.cfg.realtime,
                    http_headers=self.cfg.http_headers,
                    network_timeout_s=None if local else self.cfg.stall_timeout_s,
                )
                procs.append(
                    _Proc(
                        f"ffmpeg-{self.stream_id}", ffmpeg.record_segments_args(cmd), on_line=on_ffmpeg_line
                    )
                )
        except OSError as e:
            for p in procs:
                p.stop(2.0)
            _remove_attempt(folder)
            return _Attempt(reason=f"cannot start {self.via}: {e}")
        try:
            return self._watch(broadcast_id, folder, procs, source_start, local, hls, now + (wait_s or 0.0))
        finally:
            if out_full and self._hls_on_disk is not None:
                # The output got data it could not write (a full disk): ask again from the last file
                # that reached the disk, a little before it (_REJOIN_BACK).
                self._hls_last_done = self._hls_on_disk - _REJOIN_BACK
                logger.warning(
                    "stream %s: recording could not be written (%s); the next connection asks the "
                    "playlist again from segment %d",
                    self.stream_id,
                    out_full[0],
                    self._hls_last_done + 1,
                )
            elif hls.last_done is not None:
                # Data the output got, whether a new broadcast or media recorded before: either way
                # the next connection need not ask for it again.
                self._hls_last_done = hls.last_done

    def _rejoin_wait_s(self, now: float) -> float | None:
        """How long a rejoin may poll a stream that does not answer: what is left of the rejoin window
        since the last data (ingest.hls_join: polling from a running process notices the server's
        return within one poll, a reconnect cycle only seconds later, and the playlist window is all a
        rejoin can recover)."""
        if self._last_end_ts is None:
            return None
        left = self.cfg.reconnect.rejoin_window_s - (now - self._last_end_ts)
        return left if left >= 1.0 else None

    def _started_event(
        self, broadcast_id: str, folder: Path, started_ts: float, source_start: list[float], hls: _HlsLog
    ) -> BroadcastStarted:
        start = source_start[0] if source_start else None
        elapsed = started_ts - self._last_end_ts if self._last_end_ts is not None else 0.0
        gap = media_gap(self._last_source_end, start, elapsed)
        if gap is not None:
            logger.info(
                "stream %s: rejoined %s; %.2f s of media not recorded%s",
                self.stream_id,
                f"HLS at segment {hls.join.start} (playlist {hls.join.first}..{hls.join.last})"
                if hls.join is not None
                else "",
                gap,
                "" if gap > 0 else " (none lost)",
            )
        return BroadcastStarted(
            self.stream_id, broadcast_id, str(folder), self.url, started_ts, start, gap, hls.join
        )

    def _watch(
        self,
        broadcast_id: str,
        folder: Path,
        procs: list[_Proc],
        source_start: list[float],
        local: bool,
        hls: _HlsLog,
        wait_until: float = 0.0,
    ) -> _Attempt:
        result = _Attempt()
        growth = _Growth(folder)
        last_growth = self._clock()
        listed = 0
        stopping = False
        reason = ""
        first_growth: float | None = None
        said_waiting = False
        while procs[-1].poll() is None:  # ffmpeg (last) ends when its input ends or fails
            now = self._clock()
            if growth.changed():
                last_growth = now
            elif hls.waiting and hls.join is None and growth.size == 0 and now < wait_until:
                # streamlink is polling a stream that went away (--wait): not a stall; it gives up by
                # itself at wait_until
                last_growth = now
                if not said_waiting:
                    said_waiting = True
                    self._state("reconnecting", "waiting for the stream to answer again", 0, now)
            if growth.size > 0 and first_growth is None:
                first_growth = now
            if (
                result.broadcast_id is None
                and first_growth is not None
                # ffmpeg reports the source's clock before it writes, but its stderr is read by another
                # thread, which a loaded machine can hold back: wait a moment for it rather than store
                # a broadcast without it (later alerts are matched to earlier connections by it)
                and (source_start or now - first_growth >= _SOURCE_CLOCK_WAIT_S)
                and not self._old_media(source_start, folder)
            ):
                if not source_start:
                    logger.warning("stream %s: ffmpeg did not report the source clock", self.stream_id)
                result.broadcast_id = broadcast_id
                self.sink.broadcast_started(self._started_event(broadcast_id, folder, now, source_start, hls))
                self._state("recording", broadcast_id)
            if result.broadcast_id is not None:
                listed = self._emit_new(folder, broadcast_id, listed, result)
            if not stopping and self._stop.is_set():
                stopping, reason = True, "stopped"
                self._stop_procs(procs)
            elif not stopping and now - last_growth > self.cfg.stall_timeout_s:
                reason = f"stalled: no data for {now - last_growth:.0f} s"
                logger.warning("stream %s: %s", self.stream_id, reason)
                stopping = True
                self._stop_procs(procs)
            time.sleep(_POLL_S)
        for p in procs:
            p.stop(2.0)
        codes = [p.poll() for p in procs]
        if growth.changed():
            last_growth = self._clock()
        old_media = growth.size > 0 and self._old_media(source_start, folder)
        if result.broadcast_id is None and growth.size > 0 and not old_media:  # data came in the last moment
            result.broadcast_id = broadcast_id
            self.sink.broadcast_started(
                self._started_event(broadcast_id, folder, last_growth, source_start, hls)
            )
        if not reason:
            if local and codes[-1] == 0:
                reason, result.finished = "source ended", True
            else:
                detail = " ; ".join(s for s in (p.error_summary() for p in procs) if s)
                reason = f"connection ended (exit {codes}){': ' + detail if detail else ''}"
        if result.broadcast_id is None and old_media:
            reason = f"only media recorded before (a stale playlist?); {reason}"
            logger.info("stream %s: connection delivered nothing new; discarded", self.stream_id)
        result.reason = reason
        if result.broadcast_id is None:
            _remove_attempt(folder)
            return result
        listed = self._emit_new(folder, broadcast_id, listed, result)
        self._emit_unlisted(folder, broadcast_id, result)
        result.recorded_s = result.end_s
        self._last_source_end = source_start[0] + result.end_s if source_start else None
        self._last_end_ts = last_growth
        self.sink.broadcast_ended(
            BroadcastEnded(self.stream_id, broadcast_id, last_growth, result.end_s, reason)
        )
        return result

    def _old_media(self, source_start: list[float], folder: Path) -> bool:
        """True while all this connection delivered was recorded already (by the source's clock).

        A player reconnecting to HLS starts a few segments behind the live edge, and an ended room's
        CDN may keep serving its last playlist: such bytes are not a new broadcast. A source clock
        that went backwards by more than two minutes was reset (a new session), not replayed.
        """
        last = self._last_source_end
        if last is None or not source_start:
            return False
        start = source_start[0]
        if start > last + 0.5 or last - start > 120.0:  # a gap (the usual case), or a reset clock
            return False
        rows = read_segment_list(folder / ffmpeg.SEGMENT_LIST)
        return start + (rows[-1][2] if rows else 0.0) <= last + 0.5

    def _stop_procs(self, procs: list[_Proc]) -> None:
        """Stop upstream first, so ffmpeg reads to the end of its input and lists its last file."""

        def stop_all() -> None:
            for p in procs:
                p.stop(5.0)

        threading.Thread(target=stop_all, name=f"stop-{self.stream_id}", daemon=True).start()

    def _emit_new(self, folder: Path, broadcast_id: str, listed: int, result: _Attempt) -> int:
        rows = read_segment_list(folder / ffmpeg.SEGMENT_LIST)
        for name, start_s, end_s in rows[listed:]:
            seq = _seq_of(name)
            path = folder / name
            size = path.stat().st_size if path.exists() else 0
            seg = MediaSegment(broadcast_id, seq, str(path), start_s, max(0.0, end_s - start_s))
            result.end_s = max(result.end_s, end_s)
            self.sink.segment_recorded(SegmentRecorded(seg, size, self._clock(), self._hls_seq()))
            self._on_disk()
        return max(listed, len(rows))

    def _emit_unlisted(self, folder: Path, broadcast_id: str, result: _Attempt) -> None:
        """Files ffmpeg wrote but never listed (it was killed): placed after the last listed one."""
        rows = read_segment_list(folder / ffmpeg.SEGMENT_LIST)
        known = {_seq_of(r[0]) for r in rows}
        for path in sorted(folder.glob("seg_*.ts")):
            seq = _seq_of(path.name)
            if seq in known or path.stat().st_size == 0:
                continue
            duration = _probe_duration(path)
            if duration <= 0:
                continue
            seg = MediaSegment(broadcast_id, seq, str(path), result.end_s, duration)
            result.end_s += duration
            self.sink.segment_recorded(
                SegmentRecorded(seg, path.stat().st_size, self._clock(), self._hls_seq())
            )
            self._on_disk()

    def _hls_seq(self) -> int | None:
        return self._cur_hls.last_done if self._cur_hls is not None else None

    def _on_disk(self) -> None:
        seq = self._hls_seq()
        if seq is not None:
            self._hls_on_disk = seq


# segments asked again before the last one on disk after a write failure: the reported sequence number
# runs ahead of the files (the one ffmpeg is writing), and a line cut by the reconnect is then recorded
# whole by the next connection (its second copy is a repeat on the source's clock, not a new alert)
_REJOIN_BACK = 4


def _seq_of(name: str) -> int:
    return int(Path(name).stem.split("_")[-1])


def _probe_duration(path: Path) -> float:
    try:
        return ffmpeg.probe(path).duration_s
    except Exception:
        logger.warning("unlisted recording %s is unreadable; left out", path, exc_info=True)
        return 0.0


class _Growth:
    """Watches the newest recorded file of a folder: files are numbered, so only it can grow."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seq = 0
        self.size = 0  # bytes in files before `seq` plus the current size of `seq`
        self._done = 0  # bytes in finished files

    def changed(self) -> bool:
        before = self.size
        while (self.folder / ffmpeg.segment_name(self.seq + 1)).exists():
            self._done += _size(self.folder / ffmpeg.segment_name(self.seq))
            self.seq += 1
        self.size = self._done + _size(self.folder / ffmpeg.segment_name(self.seq))
        return self.size != before


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _remove_attempt(folder: Path) -> None:
    """Remove the folder of an attempt that recorded nothing new (no media, or media recorded before)."""
    try:
        for p in folder.iterdir():
            if p.is_file() and (p.suffix == ".ts" or p.name == ffmpeg.SEGMENT_LIST or p.stat().st_size == 0):
                p.unlink()
        folder.rmdir()
    except OSError:
        logger.warning("could not remove folder %s of a failed connection", folder, exc_info=True)
