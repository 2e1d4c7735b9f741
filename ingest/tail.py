"""Follow a broadcast's recorded files as they grow and decode their audio for live ASR.

The recorder's ffmpeg flushes every packet, so the newest `.ts` file holds audio a fraction of a second
old. `SegmentTail` reads the numbered files of one broadcast as one continuous MPEG-TS byte stream
(the format is made to be concatenated, and the files share one clock), waiting at the end of the
newest file until more bytes come, the next file appears, or the recording is over. `AudioFollower`
runs PyAV over that stream in its own thread and hands 16 kHz mono float32 audio, placed on the
broadcast's clock by the packets' timestamps, to a callback. One decoder runs across file boundaries,
so there are no clicks or lost samples at the seams.

Concurrency contract: one `AudioFollower` thread per broadcast being transcribed; it calls `on_audio`
and then `on_end` from that thread. `stop()` (any thread) makes the tail report end-of-file at its
next read, so the thread ends within one poll interval. Files are only read.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from ingest.ffmpeg import segment_name

__all__ = ["AudioFollower", "SegmentTail"]

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
_PACKET = 188


class SegmentTail(io.RawIOBase):
    """A read-only byte stream over seg_N.ts, seg_N+1.ts, ... that blocks at the live edge."""

    def __init__(
        self,
        folder: Path,
        first_seq: int,
        *,
        recording_done: Callable[[], bool],
        stop: threading.Event,
        poll_s: float = 0.03,
    ) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.seq = first_seq
        self._done = recording_done
        self._stop = stop
        self._poll_s = poll_s
        self._file: io.BufferedReader | None = None
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        while not self._stop.is_set():
            if self._file is None:
                path = self.folder / segment_name(self.seq)
                if path.exists():
                    self._file = open(path, "rb")
                elif self._skip_missing():
                    continue
                elif self._done():
                    if not path.exists():
                        return 0
                    continue
                else:
                    time.sleep(self._poll_s)
                    continue
            n = self._file.readinto(buffer)
            if n:
                self.bytes_read += n
                return n
            # at the end of this file: move on only once it is certainly complete
            if (self.folder / segment_name(self.seq + 1)).exists() or self._done():
                n = self._file.readinto(buffer)
                if n:
                    self.bytes_read += n
                    return n
                self._file.close()
                self._file = None
                self.seq += 1
                continue
            time.sleep(self._poll_s)
        return 0

    def _skip_missing(self) -> bool:
        """A file that is missing while later ones exist (deleted, never written) is skipped."""
        for ahead in range(1, 4):
            if (self.folder / segment_name(self.seq + ahead)).exists():
                logger.warning(
                    "%s: %s missing; continuing with %s",
                    self.folder,
                    segment_name(self.seq),
                    segment_name(self.seq + ahead),
                )
                self.seq += ahead
                return True
        return False

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()


class AudioFollower:
    """Decodes a broadcast's audio as it is recorded; see the module docstring."""

    def __init__(
        self,
        folder: Path,
        *,
        first_seq: int = 0,
        skip_before_s: float = 0.0,
        recording_done: Callable[[], bool],
        on_audio: Callable[[float, np.ndarray], None],
        on_end: Callable[[str], None],
        name: str = "",
        chunk_s: float = 0.1,
    ) -> None:
        self.folder = Path(folder)
        self.first_seq = first_seq
        self.skip_before_s = skip_before_s
        self._done = recording_done
        self._on_audio = on_audio
        self._on_end = on_end
        self._chunk = int(chunk_s * SAMPLE_RATE)
        self._stop = threading.Event()
        self.name = name or self.folder.name
        self._thread = threading.Thread(target=self._run, name=f"audio-{self.name}", daemon=True)
        self.decoded_end_s = skip_before_s

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        reason = "end of recording"
        try:
            self._decode()
            if self._stop.is_set():
                reason = "stopped"
        except Exception as e:
            logger.exception("audio follower %s failed", self.name)
            reason = f"failed: {e}"
        finally:
            self._on_end(reason)

    def _decode(self) -> None:
        tail = SegmentTail(self.folder, self.first_seq, recording_done=self._done, stop=self._stop)
        # Small reads and probing: packets reach the decoder as soon as they are on disk.
        raw = io.BufferedReader(tail, buffer_size=_PACKET * 10)
        try:
            container = av.open(
                raw,
                mode="r",
                format="mpegts",
                buffer_size=_PACKET * 10,
                options={"probesize": "32768", "analyzeduration": "0"},
            )
        except av.error.FFmpegError:
            if self._stop.is_set() or tail.bytes_read == 0:
                logger.info("%s: no media to read", self.name)
                return
            raise
        with container:
            if not container.streams.audio:
                logger.warning("%s: recording has no audio stream; nothing to transcribe", self.name)
                return
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            pending: list[np.ndarray] = []
            pending_n = 0
            pending_start: float | None = None
            expected: float | None = None
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as e:
                    logger.warning("%s: undecodable audio packet skipped: %s", self.name, e)
                    continue
                for frame in frames:
                    if frame.pts is None or frame.time_base is None:
                        t = expected if expected is not None else self.skip_before_s
                    else:
                        t = float(frame.pts * frame.time_base)
                    for out in resampler.resample(frame):
                        samples = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                        if expected is not None and abs(t - expected) < 0.05:
                            t = expected  # keep sample-exact continuity through small jitter
                        if (
                            pending_start is not None
                            and abs(t - (pending_start + pending_n / SAMPLE_RATE)) > 0.05
                        ):
                            self._emit(pending_start, pending)
                            pending, pending_n, pending_start = [], 0, None
                        if pending_start is None:
                            pending_start = t
                        pending.append(samples)
                        pending_n += samples.shape[0]
                        expected = t + samples.shape[0] / SAMPLE_RATE
                        t = expected
                    if pending_n >= self._chunk and pending_start is not None:
                        self._emit(pending_start, pending)
                        pending, pending_n, pending_start = [], 0, None
            if pending_start is not None:
                self._emit(pending_start, pending)

    def _emit(self, start_s: float, parts: list[np.ndarray]) -> None:
        samples = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if start_s < self.skip_before_s:  # resuming: audio before the watermark is already handled
            drop = min(samples.shape[0], round((self.skip_before_s - start_s) * SAMPLE_RATE))
            samples = samples[drop:]
            start_s += drop / SAMPLE_RATE
        if samples.shape[0]:
            self.decoded_end_s = start_s + samples.shape[0] / SAMPLE_RATE
            self._on_audio(start_s, samples)
