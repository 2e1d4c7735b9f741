"""streamlink's CLI with two additions for the recorder: rejoin an HLS playlist where the recording
stopped, and say which media sequence numbers reached the output.

Run as `python -m ingest.hls_join [--resume-after N] [--poll S] [--wait S] STREAMLINK_ARGS...` in
place of `python -m streamlink STREAMLINK_ARGS...`. Everything else (plugins, headers, cookies,
--stdout) is streamlink's own.

Why this and not a streamlink option: after a drop the recorder knows the media sequence number of the
last HLS segment it got (`#EXT-X-MEDIA-SEQUENCE` numbering). streamlink can only start a live playlist
at a distance from its live edge (`--hls-live-edge N`, `--hls-start-offset` which is a rewind from the
edge for live playlists) or at the playlist's first segment (`--hls-live-restart`). Both are counted on
a playlist the recorder has not seen yet and that moves every target duration, so a start computed from
an earlier fetch is off by one segment each time the window slides in between: one way loses a
segment, the other records one twice. ffmpeg's `-live_start_index` has the same problem. Choosing the
start by sequence number on the very playlist streamlink loads has none: the first segment not yet
recorded if the playlist still offers it, else the oldest it offers (what fell out of the window is
the only loss, and the recorder measures it on the media clock).

This uses streamlink internals (`HLSStreamWorker.process_segments` and `.sequence`, the writer's
`_write_plain` / `_write_decrypt`), which is why streamlink is pinned in pyproject.toml. If they are
not as expected the wrapper says so on stderr and streamlink runs unchanged (live-edge joins).

Riding out an outage (`--poll`, `--wait`). What a drop can still recover is bounded by the playlist
window: the oldest unrecorded segment must still be listed when the new connection loads the playlist.
Two delays eat into that window, and both are cut here:
- how far the recording trails the live edge when the server goes away. streamlink reloads a live
  playlist every target duration (at least 1 s), so the newest segment can sit unseen for a whole
  segment; `--poll S` reloads at most S apart (streamlink itself refuses values under 2 s).
- how long after the server's return the new connection loads the playlist. A reconnect that fails
  and exits is retried after the recorder's backoff plus a fresh process start (a Python interpreter
  and streamlink's imports, 1-2 s on a busy box), and that cycle repeats through the outage, so the
  return is noticed seconds late. With `--wait S` the wrapper instead keeps its (already started)
  streamlink fetching the playlist every `--poll`/2 seconds for up to S seconds (streamlink's own
  `--retry-streams`), and says so (`waiting`), so the recorder does not count the wait as a stall: the
  rejoin follows the server's return within one poll.
With a 16 s window, a 15 s outage and 2 s segments this is the difference between losing a segment or
two and losing nothing (tests/test_live_hls.py).

Lines on stderr, for the recorder (`parse_marker`):
    livewatch-hls join first=F last=L start=S resume_after=N|-
    livewatch-hls done N            (segment N was written whole to the output)
    livewatch-hls waiting           (the stream is not answering yet; retrying every --poll/2 s)
    livewatch-hls unsupported REASON

Streams with separate audio/video renditions (a muxed HLS stream) run one worker per playlist; their
sequence numbers are not comparable, so those join at the live edge as before.
"""

from __future__ import annotations

import math
import sys
import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["HlsMarker", "choose_start", "main", "parse_marker", "wrapper_args"]

PREFIX = "livewatch-hls "


@dataclass(frozen=True, slots=True)
class HlsMarker:
    kind: str  # join | done | waiting | unsupported
    first: int | None = None
    last: int | None = None
    start: int | None = None
    resume_after: int | None = None
    seq: int | None = None
    detail: str = ""


def choose_start(first: int, last: int, resume_after: int | None, default: int) -> int:
    """The media sequence number to start at on a freshly loaded playlist. Pure.

    `default` is streamlink's own choice (live edge or restart). With `resume_after` = the last segment
    recorded: the next one if the playlist still offers it (or it is the next to appear), else the
    oldest the playlist offers. A wanted number beyond the next one means the numbering restarted (a
    new session of the room): streamlink's choice then.
    """
    if resume_after is None:
        return default
    wanted = resume_after + 1
    if wanted > last + 1:
        return default
    return max(first, wanted)


def parse_marker(line: str) -> HlsMarker | None:
    """The marker a stderr line carries, else None. Pure."""
    i = line.find(PREFIX)
    if i < 0:
        return None
    parts = line[i + len(PREFIX) :].split()
    if not parts:
        return None
    kind, rest = parts[0], parts[1:]
    try:
        if kind == "done" and rest:
            return HlsMarker("done", seq=int(rest[0]))
        if kind == "join":
            kv = dict(p.split("=", 1) for p in rest if "=" in p)

            def num(k: str) -> int | None:
                v = kv.get(k, "-")
                return None if v == "-" else int(v)

            return HlsMarker(
                "join", first=num("first"), last=num("last"), start=num("start"), resume_after=num("resume_after")
            )
        if kind == "unsupported":
            return HlsMarker("unsupported", detail=" ".join(rest))
        if kind == "waiting":
            return HlsMarker("waiting")
    except ValueError:
        return None
    return None


def _say(text: str) -> None:
    sys.stderr.write(PREFIX + text + "\n")
    sys.stderr.flush()


def _patch(resume_after: int | None, poll_s: float | None = None) -> None:
    from streamlink.stream.hls import hls as slhls

    worker_cls: Any = slhls.HLSStreamWorker
    writer_cls: Any = slhls.HLSStreamWriter
    needed = [(worker_cls, "process_segments"), (writer_cls, "_write"), (writer_cls, "_write_plain")]
    missing = [f"{c.__name__}.{n}" for c, n in needed if not callable(getattr(c, n, None))]
    if missing:
        _say("unsupported missing " + ",".join(missing))
        return
    workers: list[Any] = []
    lock = threading.Lock()
    orig_process = worker_cls.process_segments

    def process_segments(self: Any, playlist: Any) -> None:
        first_time = getattr(self, "sequence", None) is not None and self.sequence < 0
        orig_process(self, playlist)
        if poll_s is not None:
            # reload at most poll_s apart (streamlink: the target duration, or half of it when the
            # playlist did not change, never under 1 s): the recording stays within poll_s of the live
            # edge, so an outage finds it holding everything the server had listed (module docstring)
            self._reload_time = min(self._reload_time, poll_s)
        if not first_time or not playlist.segments:
            return
        with lock:
            if self not in workers:
                workers.append(self)
            muxed = len(workers) > 1
        first, last = playlist.segments[0].num, playlist.segments[-1].num
        start = self.sequence if muxed else choose_start(first, last, resume_after, self.sequence)
        self.sequence = start
        ra = "-" if resume_after is None or muxed else str(resume_after)
        _say(f"join first={first} last={last} start={start} resume_after={ra}")

    worker_cls.process_segments = process_segments

    # Which segments reached the output whole: _write runs the plain or decrypting writer, which
    # returns False on a failed download (partial data may have been written: not "done").
    state = threading.local()
    orig_write = writer_cls._write

    def _write(self: Any, segment: Any, response: Any, is_map: bool, *a: Any) -> Any:
        state.is_map = is_map
        return orig_write(self, segment, response, is_map, *a)

    def wrap(name: str) -> None:
        orig = getattr(writer_cls, name, None)
        if orig is None:
            return

        def inner(self: Any, segment: Any, *a: Any) -> Any:
            ok = orig(self, segment, *a)
            if ok and not getattr(state, "is_map", False):
                _say(f"done {segment.num}")
            return ok

        setattr(writer_cls, name, inner)

    writer_cls._write = _write
    wrap("_write_plain")
    wrap("_write_decrypt")


def _patch_waiting() -> None:
    """Say `waiting` (once) when a fetch of the stream list fails or finds nothing, so the recorder
    knows the process is polling a stream that is away rather than stalled."""
    import streamlink_cli.main as slmain

    orig = slmain.fetch_streams
    said = threading.Event()

    def fetch_streams(plugin: Any) -> Any:
        try:
            streams = orig(plugin)
        except Exception:
            if not said.is_set():
                said.set()
                _say("waiting")
            raise
        if not streams and not said.is_set():
            said.set()
            _say("waiting")
        return streams

    slmain.fetch_streams = fetch_streams


def wrapper_args(argv: list[str]) -> tuple[int | None, float | None, float | None, list[str]]:
    """(resume_after, poll_s, wait_s, streamlink's own arguments) from the command line. Pure."""
    args = list(argv)
    resume_after: int | None = None
    poll_s: float | None = None
    wait_s: float | None = None
    while len(args) >= 2 and args[0] in ("--resume-after", "--poll", "--wait"):
        flag, value, args = args[0], args[1], args[2:]
        if flag == "--resume-after":
            resume_after = int(value)
        elif flag == "--poll":
            poll_s = float(value)
        else:
            wait_s = float(value)
    return resume_after, poll_s, wait_s, args


def main(argv: list[str] | None = None) -> None:
    resume_after, poll_s, wait_s, args = wrapper_args(sys.argv[1:] if argv is None else argv)
    try:
        _patch(resume_after, poll_s)
    except Exception as e:  # never stop a recording for want of the rejoin
        _say(f"unsupported {type(e).__name__}: {e}")
    if wait_s is not None and wait_s > 0:
        interval = max(0.05, (poll_s or 1.0) / 2)
        args = ["--retry-streams", f"{interval:g}", "--retry-max", str(max(1, math.ceil(wait_s / interval))), *args]
        try:
            _patch_waiting()
        except Exception as e:
            _say(f"unsupported {type(e).__name__}: {e}")
    from streamlink_cli.main import main as streamlink_main

    sys.argv = ["streamlink", *args]
    streamlink_main()


if __name__ == "__main__":
    main()
