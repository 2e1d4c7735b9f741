"""Helpers for the live-monitoring tests and benchmark: a live HLS server on 127.0.0.1, fakes.

- `HlsServer`: `ffmpeg -re FILE → HLS` (ingest.ffmpeg.hls_serve_args) into a temp folder plus a
  threaded HTTP server on a free port; `cut()` stops the HTTP server while ffmpeg keeps producing,
  `restore()` brings it back on the same port.
- `ScriptTranscriber`: a fake `Transcriber` that "hears" scripted lines: for an audio window it returns
  the lines (on the broadcast clock) that the window covers, character by character with even times,
  cut at the window's end like a real recognizer hearing half a sentence.
- `ToneScript` + `ToneTranscriber`: synthetic media where line i is a tone of its own pitch, and a fake
  transcriber that hears those tones and "says" line i. It works on any clock (reconnects, restarts,
  HLS offsets), which a time-scripted fake cannot.
- `LookupRules` / `LookupHolder`: fake rules that flag a scripted line by its labels.
- `python tests/live_helpers.py monitor CONFIG SCRIPT`: a monitor process with those fakes (for the
  kill -9 test, which needs a process to kill).
"""

from __future__ import annotations

import http.server
import json
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asr.types import Utterance, Word
from detectors.types import Detection
from ingest import ffmpeg

if TYPE_CHECKING:
    from app.monitor import Monitor

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "examples" / "corpus"
SR = 16_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HlsServer:
    """A corpus file served as live HLS on 127.0.0.1 (see the module docstring)."""

    def __init__(self, media: Path, folder: Path, *, hls_time_s: float = 2.0, list_size: int = 6) -> None:
        self.media = media
        self.folder = folder
        self.hls_time_s = hls_time_s
        self.list_size = list_size
        self.port = free_port()
        self.producer: subprocess.Popen[bytes] | None = None
        self.started_ts: float | None = None  # wall clock when ffmpeg started reading the file
        self._httpd: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"hls://http://127.0.0.1:{self.port}/index.m3u8"

    def start(self, wait_segments: int = 1) -> HlsServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        args = ffmpeg.hls_serve_args(
            ffmpeg.HlsServeCommand(self.media, self.folder, self.hls_time_s, self.list_size)
        )
        self.started_ts = time.time()
        self.producer = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        self.restore()
        deadline = time.time() + 30
        while time.time() < deadline:
            playlist = self.folder / "index.m3u8"
            if playlist.exists() and playlist.read_text().count("#EXTINF") >= wait_segments:
                return self
            time.sleep(0.1)
        raise RuntimeError("HLS producer wrote no playlist")

    def cut(self) -> None:
        """Stop answering HTTP (the producer keeps going, as a live room would)."""
        if self._httpd is not None:
            self._httpd.terminate()
            self._httpd.wait(10)
            self._httpd = None

    def restore(self) -> None:
        """Serve the folder again on the same port, from its own process (no GIL shared with a monitor)."""
        self._httpd = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "http.server",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--directory",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 10
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"HTTP server on port {self.port} did not start")

    @property
    def finished(self) -> bool:
        return self.producer is not None and self.producer.poll() is not None

    def stop(self) -> None:
        self.cut()
        if self.producer is not None and self.producer.poll() is None:
            self.producer.terminate()
            self.producer.wait(10)

    def __enter__(self) -> HlsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- a webhook receiver --------------------------------------------------------------------------------


class Receiver:
    """A real HTTP endpoint on 127.0.0.1 that records POSTs; answers the given status codes, then 200."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = list(codes)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                code = receiver.codes.pop(0) if receiver.codes else 200
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- fakes ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    start_s: float
    end_s: float
    text: str
    labels: tuple[str, ...] = ()


def corpus_lines(name: str = "broadcast_0", offset_s: float = 0.0) -> list[Line]:
    """The spans of a corpus broadcast as scripted lines (optionally shifted onto another clock)."""
    data = json.loads((CORPUS / f"{name}.json").read_text(encoding="utf-8"))
    return [
        Line(
            sp["start_s"] + offset_s,
            sp["end_s"] + offset_s,
            sp["text"],
            tuple(lb for lb in sp["labels"] if lb != "clean"),
        )
        for sp in data["spans"]
    ]


def _chars(text: str) -> list[str]:
    return [c for c in text if c.isalnum()]


class ScriptTranscriber:
    """Fake transcriber: returns the scripted lines a window of audio covers (see the module docstring).

    Only lines inside audio that is loud enough count, so silence (zeros) yields nothing, as with
    VAD. `calls` records every (offset_s, duration_s) asked for.
    """

    def __init__(self, lines: Sequence[Line], *, delay_s: float = 0.0) -> None:
        self.lines = list(lines)
        self.delay_s = delay_s
        self.calls: list[tuple[float, float]] = []

    def transcribe(
        self, audio: np.ndarray, *, offset_s: float = 0.0, prompt: str | None = None
    ) -> Iterator[Utterance]:
        dur = audio.shape[0] / SR
        self.calls.append((offset_s, dur))
        if self.delay_s:
            time.sleep(self.delay_s)
        end = offset_s + dur
        out = []
        for line in self.lines:
            if line.end_s <= offset_s or line.start_s >= end:
                continue
            lo = int(max(0.0, line.start_s - offset_s) * SR)
            hi = int(min(dur, line.end_s - offset_s) * SR)
            if hi <= lo or float(np.abs(audio[lo:hi]).max(initial=0.0)) < 1e-4:
                continue  # silence where the line should be: not heard
            chars = _chars(line.text)
            step = (line.end_s - line.start_s) / len(chars)
            words = []
            for i, c in enumerate(chars):
                ws, we = line.start_s + i * step, line.start_s + (i + 1) * step
                if ws >= offset_s - 1e-6 and we <= end + 1e-6:
                    words.append(Word(c, round(ws, 3), round(we, 3), 0.9))
            if words:
                text = "".join(w.text for w in words)
                out.append(
                    Utterance(len(out), words[0].start_s, words[-1].end_s, text, tuple(words), raw_text=text)
                )
        return iter(out)


@dataclass(frozen=True, slots=True)
class ToneScript:
    """Line i is spoken at [period*i + lead, +length] as a tone of 400 + 150*i Hz."""

    texts: tuple[str, ...]
    labels: tuple[tuple[str, ...], ...]
    period_s: float = 5.0
    lead_s: float = 1.0
    length_s: float = 2.5

    @classmethod
    def from_corpus(cls, ids: Sequence[str], **kw: float) -> ToneScript:
        clips = {}
        for raw in (CORPUS / "clips.jsonl").read_text(encoding="utf-8").splitlines():
            d = json.loads(raw)
            clips[d["id"]] = d
        return cls(
            tuple(clips[i]["text"] for i in ids),
            tuple(tuple(lb for lb in clips[i]["labels"] if lb != "clean") for i in ids),
            **kw,
        )

    @property
    def duration_s(self) -> float:
        return self.period_s * len(self.texts)

    def freq(self, i: int) -> float:
        return 400.0 + 150.0 * i

    def lines(self) -> list[Line]:
        return [
            Line(self.period_s * i + self.lead_s, self.period_s * i + self.lead_s + self.length_s, t, lb)
            for i, (t, lb) in enumerate(zip(self.texts, self.labels, strict=True))
        ]

    def audio(self) -> np.ndarray:
        """The script's sound at 16 kHz, without ffmpeg (for unit tests)."""
        t = np.arange(int(self.duration_s * SR)) / SR
        idx = np.floor(t / self.period_s)
        on = ((t % self.period_s) >= self.lead_s) & ((t % self.period_s) <= self.lead_s + self.length_s)
        return (0.3 * np.sin(2 * np.pi * (400 + 150 * idx) * t) * on).astype(np.float32)

    def make_media(self, path: Path, *, video: bool = True, gop_s: float = 1.0) -> Path:
        """Write the script as an MP4 (H.264 test pattern + AAC tones) with real ffmpeg."""
        p, a, n = self.period_s, self.lead_s, self.length_s
        expr = f"0.3*sin(2*PI*(400+150*floor(t/{p}))*t)*between(mod(t,{p}),{a},{a + n})"
        args = [
            ffmpeg.ffmpeg_exe(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"aevalsrc=exprs='{expr}':s=48000:d={self.duration_s}",
        ]
        if video:
            args += [
                "-f",
                "lavfi",
                "-i",
                f"testsrc=size=320x180:rate=25:duration={self.duration_s}",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                str(int(25 * gop_s)),
                "-pix_fmt",
                "yuv420p",
            ]
        args += ["-c:a", "aac", "-b:a", "64k", "-shortest", str(path)]
        subprocess.run(args, check=True)
        return path


def decode_audio(paths: Sequence[Path]) -> np.ndarray:
    """The audio of recorded .ts files, joined in order, as 16 kHz mono float32 (real ffmpeg)."""
    if not paths:
        return np.zeros(0, np.float32)
    proc = subprocess.run(
        [
            ffmpeg.ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            "concat:" + "|".join(str(p) for p in paths),
            "-map",
            "0:a:0",
            "-ac",
            "1",
            "-ar",
            str(SR),
            "-f",
            "f32le",
            "pipe:1",
        ],
        capture_output=True,
        check=True,
    )
    return np.frombuffer(proc.stdout, np.float32)


def tone_span(script: ToneScript, paths: Sequence[Path]) -> tuple[float, float]:
    """Which stretch of the script a recording holds, found from the sound alone: (start, end) seconds.

    Each tone onset heard inside the recording (silence, then a tone) is identified by its pitch, so
    its time in the script is known; the recording's start on the script's clock is the median of
    (script onset - recording onset). Independent of ffmpeg's reported start times and of the stored
    durations, so it can check them. Needs one whole onset in the recording.
    """
    audio = decode_audio(paths)
    hop = SR // 100  # 10 ms frames
    n = audio.shape[0] // hop
    loud = np.sqrt((audio[: n * hop].reshape(n, hop) ** 2).mean(axis=1)) > 0.05
    quiet_before = 20  # 0.2 s of silence, then a tone
    offsets = []
    for i in range(quiet_before, n - 30):
        if loud[i] and not loud[i - quiet_before : i].any():
            seg = audio[(i + 2) * hop : (i + 27) * hop]
            spectrum = np.abs(np.fft.rfft(seg * np.hanning(seg.shape[0])))
            freq = float(np.argmax(spectrum)) * SR / seg.shape[0]
            idx = round((freq - 400.0) / 150.0)
            if 0 <= idx < len(script.texts):
                offsets.append(script.period_s * idx + script.lead_s - i * hop / SR)
    if not offsets:
        raise AssertionError(f"no whole tone onset in {[p.name for p in paths]}")
    t0 = float(np.median(offsets))
    return t0, t0 + audio.shape[0] / SR


class ToneTranscriber:
    """Fake transcriber that hears `ToneScript` tones (see the module docstring).

    A tone heard in full gives its line; one cut by the window's end gives the characters heard so
    far, as a recognizer would. Silence gives nothing. Thread-compatible like the real one: one caller.
    """

    def __init__(self, script: ToneScript, *, delay_s: float = 0.0) -> None:
        self.script = script
        self.delay_s = delay_s
        self.calls: list[tuple[float, float]] = []

    def transcribe(
        self, audio: np.ndarray, *, offset_s: float = 0.0, prompt: str | None = None
    ) -> Iterator[Utterance]:
        self.calls.append((offset_s, audio.shape[0] / SR))
        if self.delay_s:
            time.sleep(self.delay_s)
        hop = SR // 20  # 50 ms frames
        n = audio.shape[0] // hop
        if n == 0:
            return iter(())
        frames = audio[: n * hop].reshape(n, hop)
        loud = np.sqrt((frames**2).mean(axis=1)) > 0.05
        out: list[Utterance] = []
        i = 0
        while i < n:
            if not loud[i]:
                i += 1
                continue
            j = i
            while j < n and loud[j]:
                j += 1
            seg = audio[i * hop : j * hop]
            spectrum = np.abs(np.fft.rfft(seg * np.hanning(seg.shape[0])))
            freq = float(np.argmax(spectrum)) * SR / seg.shape[0]
            idx = round((freq - 400.0) / 150.0)
            t_end = offset_s + j * hop / SR
            if j < n and i == 0:  # cut by the window's start but ended inside it
                t_start = t_end - self.script.length_s
            else:
                t_start = offset_s + i * hop / SR
            if 0 <= idx < len(self.script.texts) and (j - i) >= 3:
                chars = _chars(self.script.texts[idx])
                step = self.script.length_s / len(chars)
                words = [
                    Word(c, round(t_start + k * step, 3), round(t_start + (k + 1) * step, 3), 0.9)
                    for k, c in enumerate(chars)
                    if t_start + (k + 1) * step <= t_end + 0.06
                ]
                if words:
                    text = "".join(w.text for w in words)
                    out.append(
                        Utterance(
                            len(out), words[0].start_s, words[-1].end_s, text, tuple(words), raw_text=text
                        )
                    )
            i = j
        return iter(out)


class LookupRules:
    """Fake rules: an utterance containing a labelled line's text raises one detection per label."""

    def __init__(self, lines: Sequence[Line], version: str = "test-rules") -> None:
        self.version = version
        self.table = {"".join(_chars(ln.text)): ln.labels for ln in lines if ln.labels}

    def detect(self, utt: Utterance) -> list[Detection]:
        out = []
        for text, labels in self.table.items():
            if text and text in utt.text:
                for lb in labels:
                    out.append(
                        Detection(
                            rule_id=f"test.{lb}",
                            category=lb,
                            code="T1",
                            severity="high",
                            law="test law",
                            source="speech",
                            start_s=utt.start_s,
                            end_s=utt.end_s,
                            matched=text[:6],
                            text=utt.text,
                        )
                    )
        return out


class LookupHolder:
    def __init__(self, rules: LookupRules) -> None:
        self.rules = rules

    def maybe_reload(self) -> LookupRules:
        return self.rules


def save_script(script: ToneScript, path: Path) -> Path:
    path.write_text(
        json.dumps(
            {
                "texts": script.texts,
                "labels": script.labels,
                "period_s": script.period_s,
                "lead_s": script.lead_s,
                "length_s": script.length_s,
            },
            ensure_ascii=False,
        )
    )
    return path


def load_script(path: Path) -> ToneScript:
    d = json.loads(path.read_text())
    return ToneScript(
        tuple(d["texts"]), tuple(tuple(x) for x in d["labels"]), d["period_s"], d["lead_s"], d["length_s"]
    )


def run_fake_monitor(config: Path, script_path: Path) -> None:
    """A monitor process with ToneTranscriber/LookupRules for a saved ToneScript (SIGTERM stops it)."""
    import logging

    from app.monitor import Monitor
    from app.monitor_config import load_monitor_config
    from store.db import Database

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    script = load_script(script_path)
    cfg = load_monitor_config(config)
    data_dir = cfg.resolved_data_dir()
    rules = LookupRules(script.lines())
    mon = Monitor(
        cfg,
        Database.for_data_dir(data_dir, cfg.db_url),
        data_dir,
        transcriber=ToneTranscriber(script),
        rule_holder=lambda dirs: LookupHolder(rules),
    )
    _serve(mon)


def _serve(mon: Monitor) -> None:
    """Run a monitor until SIGTERM."""
    import signal

    quit_event = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: quit_event.set())
    mon.start()
    try:
        quit_event.wait()
    finally:
        mon.stop()


class Deaf:
    """A transcriber that hears nothing (tests where every alert must come from the frames)."""

    def transcribe(
        self, audio: np.ndarray, *, offset_s: float = 0.0, prompt: str | None = None
    ) -> Iterator[Utterance]:
        return iter(())


def run_video_monitor(config: Path) -> None:
    """A monitor process with the shipped rules and real frame analysis but no speech (SIGTERM stops it)."""
    import logging

    from app.monitor import Monitor
    from app.monitor_config import load_monitor_config
    from store.db import Database

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_monitor_config(config)
    data_dir = cfg.resolved_data_dir()
    _serve(Monitor(cfg, Database.for_data_dir(data_dir, cfg.db_url), data_dir, transcriber=Deaf()))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "monitor":
        run_fake_monitor(Path(sys.argv[2]), Path(sys.argv[3]))
    elif len(sys.argv) == 3 and sys.argv[1] == "video-monitor":
        run_video_monitor(Path(sys.argv[2]))
    else:
        sys.exit("usage: python tests/live_helpers.py monitor CONFIG SCRIPT | video-monitor CONFIG")


def store_ro(data: Path) -> sqlite3.Connection:
    """A read-only connection to a running monitor's store (WAL: it never blocks the writer)."""
    return sqlite3.connect(f"file:{data / 'livewatch.db'}?mode=ro", uri=True, timeout=5)


def alerts_pending(data: Path, proc: subprocess.Popen[bytes], n: int = 2) -> bool:
    """`n` alerts raised and at least one of them still waiting for its post-roll (the monitor alive)."""
    assert proc.poll() is None, "the monitor exited"
    if not (data / "livewatch.db").exists():
        return False
    try:
        with closing(store_ro(data)) as c:
            count, pending = c.execute(
                "SELECT count(*), sum(evidence_status = 'pending') FROM alerts"
            ).fetchone()
    except sqlite3.OperationalError:  # not migrated yet
        return False
    return bool(count and count >= n and pending)


def all_done(data: Path) -> bool:
    with closing(store_ro(data)) as c:
        open_ = c.execute("SELECT count(*) FROM broadcasts WHERE status != 'done'").fetchone()[0]
        total = c.execute("SELECT count(*) FROM broadcasts").fetchone()[0]
        waiting = c.execute("SELECT count(*) FROM alerts WHERE evidence_status != 'done'").fetchone()[0]
    return bool(total >= 2 and open_ == 0 and waiting == 0)


def wait_for(cond: Callable[[], bool], timeout: float, what: str, poll: float = 0.2) -> None:
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)
