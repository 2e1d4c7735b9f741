"""Every ffmpeg command livewatch runs is built here, as plain argument lists.

Keeping them in one module means the recording, clip-cutting and snapshot commands can change (or move
away from the ffmpeg CLI) without touching callers. Probing uses PyAV, since the bundled ffmpeg from
imageio-ffmpeg ships without ffprobe.

Functions here run a subprocess and return when it exits; they are safe to call from any thread.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import av

from ingest.errors import MediaError
from ingest.types import MediaInfo

__all__ = [
    "SEGMENT_LIST",
    "SEGMENT_PATTERN",
    "ClipResult",
    "HlsServeCommand",
    "RecordCommand",
    "cut_clip",
    "ffmpeg_exe",
    "hls_serve_args",
    "pcm_args",
    "probe",
    "record_segments_args",
    "segment_name",
    "snapshot",
]

logger = logging.getLogger(__name__)

# Containers whose packets can be cut without re-encoding into a file of the same kind.
_COPY_EXT = {
    ".mp4": ".mp4",
    ".m4v": ".mp4",
    ".mov": ".mp4",
    ".mkv": ".mkv",
    ".webm": ".webm",
    ".flv": ".mp4",
    ".ts": ".mp4",
    ".m2ts": ".mp4",
    ".m4a": ".m4a",
    ".aac": ".m4a",
    ".mp3": ".mp3",
    ".flac": ".mp4",  # FLAC in MP4 keeps a true duration and plays in browsers
    ".wav": ".wav",
    ".ogg": ".ogg",
    ".opus": ".ogg",
}


@cache
def ffmpeg_exe() -> str:
    """$LIVEWATCH_FFMPEG, else the binary bundled by imageio-ffmpeg, else ffmpeg on PATH."""
    env = os.environ.get("LIVEWATCH_FFMPEG")
    if env:
        return env
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        found = shutil.which("ffmpeg")
        if not found:
            raise RuntimeError("no ffmpeg found: pip install imageio-ffmpeg or apt install ffmpeg") from None
        return found


def probe(path: str | Path) -> MediaInfo:
    """Open a media file and describe it, or raise MediaError saying why it cannot be used."""
    p = Path(path)
    if not p.exists():
        raise MediaError(str(p), "no such file")
    if p.is_dir():
        raise MediaError(str(p), "is a directory, not a media file")
    if p.stat().st_size == 0:
        raise MediaError(str(p), "file is empty")
    try:
        # damaged media may carry metadata that is not valid UTF-8: PyAV then raises UnicodeDecodeError
        # from open (found by tests/faults/test_fuzz.py); the tags are not needed, so ignore bad bytes
        with av.open(str(p), metadata_errors="ignore") as c:
            has_audio = bool(c.streams.audio)
            has_video = any(s.frames != 1 for s in c.streams.video) if c.streams.video else False
            if not has_audio and not has_video:
                raise MediaError(
                    str(p),
                    f"not a media file (ffmpeg reads it as '{c.format.name}', with no audio or video stream)",
                )
            duration = float(c.duration / av.time_base) if c.duration else 0.0
            if duration <= 0:
                duration = _duration_by_demux(c)
            w = h = 0
            if has_video:
                cc = c.streams.video[0].codec_context  # None for a stream whose codec is unknown (damaged)
                w, h = (cc.width, cc.height) if cc is not None else (0, 0)
            fmt = c.format.name
            creation_ts = container_creation_ts(dict(c.metadata))
    except av.error.InvalidDataError:
        raise MediaError(
            str(p), "not readable as media (no known format found: not a media file, or truncated)"
        ) from None
    except av.error.FFmpegError as e:
        raise MediaError(str(p), f"cannot read media: {e}") from None
    if duration <= 0:
        raise MediaError(str(p), "media has no duration (empty or truncated)")
    return MediaInfo(str(p), duration, has_audio, has_video, fmt, w, h, creation_ts)


def container_creation_ts(tags: Mapping[str, str]) -> float | None:
    """A container's `creation_time` tag as epoch seconds, or None if absent or implausible. Pure.

    MP4 writers put 0 (1904 or 1970) there when they know no time, and a naive time is taken as UTC
    (what ffmpeg writes).
    """
    raw = next((v for k, v in tags.items() if k.lower() == "creation_time"), None)
    if not raw:
        return None
    try:
        dt = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ts = dt.timestamp()
    return ts if ts >= 946_684_800 else None  # before 2000: a placeholder, not a recording's start


def _duration_by_demux(c: av.container.InputContainer) -> float:
    end = 0.0
    for pkt in c.demux():
        if pkt.pts is not None and pkt.time_base is not None:
            end = max(end, float((pkt.pts + (pkt.duration or 0)) * pkt.time_base))
    return end


def _run(args: list[str], what: str) -> None:
    logger.debug("ffmpeg %s: %s", what, " ".join(args))
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        raise RuntimeError(f"ffmpeg {what} failed ({proc.returncode}): {' | '.join(tail)}")


@dataclass(frozen=True, slots=True)
class ClipResult:
    path: str
    start_s: float  # where the clip actually starts on the source's clock (a keyframe at or before the ask)
    end_s: float
    requested_start_s: float
    requested_end_s: float
    reencoded: bool


def clip_extension(src: str | Path) -> str:
    return _COPY_EXT.get(Path(src).suffix.lower(), ".mkv")


def cut_clip(
    src: str | Path,
    dest_stem: str | Path,
    start_s: float,
    end_s: float,
    media_duration_s: float | None = None,
) -> ClipResult:
    """Copy [start_s, end_s] of `src` into a new file without re-encoding.

    Stream copy begins at the keyframe at or before `start_s`, so the clip may start a little early and
    never late. If the container refuses a stream copy, the clip is re-encoded and says so. The source
    is only read.
    """
    start_s = max(0.0, start_s)
    if media_duration_s is not None:
        end_s = min(end_s, media_duration_s)
    dur = max(0.1, end_s - start_s)
    ext = clip_extension(src)
    out = Path(str(dest_stem) + ext)
    base = [
        ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-ss",
        f"{start_s:.3f}",
        "-i",
        str(src),
        "-t",
        f"{dur:.3f}",
        "-map",
        "0:v:0?",
        "-map",
        "0:a:0?",
    ]
    tail = ["-movflags", "+faststart"] if ext in (".mp4", ".m4a") else []
    reencoded = False
    try:
        _run([*base, "-c", "copy", "-avoid_negative_ts", "make_zero", *tail, str(out)], "clip copy")
    except RuntimeError:
        logger.warning("stream copy of %s failed; re-encoding the clip instead", src, exc_info=True)
        out = Path(str(dest_stem) + ".mp4")
        _run(
            [
                *base,
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-c:a",
                "aac",
                "-movflags",
                "+faststart",
                str(out),
            ],
            "clip re-encode",
        )
        reencoded = True
    clip = probe(out)
    # A stream copy starts at a keyframe at or before the ask and ends where asked: place it by its end.
    # Shorter than asked, the source ended first (a recording cut short by a crash, whose container may
    # still claim its planned length): place it by its start, the keyframe ffmpeg seeked to.
    if reencoded:
        actual_start = start_s
    elif clip.duration_s < dur - 0.15:
        actual_start = _keyframe_at_or_before(src, start_s)
    else:
        actual_start = max(0.0, start_s + dur - clip.duration_s)
    return ClipResult(
        str(out), actual_start, actual_start + clip.duration_s, start_s, start_s + dur, reencoded
    )


def _keyframe_at_or_before(src: str | Path, t: float) -> float:
    """Where a stream copy from `t` starts: the video keyframe (else the audio packet) at or before `t`."""
    try:
        with av.open(str(src), metadata_errors="ignore") as c:
            streams: list[av.stream.Stream] = [*c.streams.video] or [*c.streams.audio]
            if not streams:
                return t
            vs = streams[0]
            origin = (c.start_time or 0) / av.time_base
            if vs.time_base is None:
                return t
            c.seek(int((t + origin) / vs.time_base), stream=vs, backward=True, any_frame=False)
            for pkt in c.demux(vs):
                if pkt.pts is not None and pkt.is_keyframe:
                    return max(0.0, min(t, float(pkt.pts * vs.time_base) - origin))
    except (av.error.FFmpegError, OSError):
        logger.warning("cannot find the keyframe before %.2f s in %s", t, src, exc_info=True)
    return t


def concat_segments(paths: list[str | Path], dest: str | Path) -> str:
    """Join recorded copy-codec segments into one file by stream copy (the concat demuxer)."""
    dest = Path(dest)
    listing = dest.with_suffix(".txt")
    listing.write_text("".join(f"file '{Path(p).resolve()}'\n" for p in paths), encoding="utf-8")
    try:
        _run(
            [
                ffmpeg_exe(),
                "-hide_banner",
                "-nostdin",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "concat",
                "-safe",
                "0",
                "-i",
                str(listing),
                "-map",
                "0:v:0?",
                "-map",
                "0:a:0?",
                "-c",
                "copy",
                str(dest),
            ],
            "concat",
        )
    finally:
        listing.unlink(missing_ok=True)
    return str(dest)


def snapshot(src: str | Path, at_s: float, dest: str | Path) -> str:
    """Write the frame at `at_s` of a video as JPEG."""
    _run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-ss",
            f"{max(0.0, at_s):.3f}",
            "-i",
            str(src),
            "-frames:v",
            "1",
            "-q:v",
            "2",
            str(dest),
        ],
        "snapshot",
    )
    if not Path(dest).exists():
        raise RuntimeError(f"ffmpeg snapshot wrote no frame at {at_s:.2f}s of {src}")
    return str(dest)


# -- live recording ------------------------------------------------------------------------------------

SEGMENT_PATTERN = "seg_%06d.ts"  # recorded files of one broadcast, numbered from 0
SEGMENT_LIST = "segments.csv"  # ffmpeg's segment list: one "name,start,end" line per finished file


def pcm_args(source: str | Path, *, sample_rate: int = 16_000, realtime: bool = False) -> list[str]:
    """ffmpeg arguments: the audio of `source` (any media ffmpeg reads) as mono signed 16-bit
    little-endian PCM at `sample_rate` on stdout; `realtime` (-re) reads it at its own speed, as live."""
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"]
    if realtime:
        args.append("-re")
    return [*args, "-i", str(source), "-vn", "-ac", "1", "-ar", str(sample_rate), "-f", "s16le", "pipe:1"]


def segment_name(seq: int) -> str:
    return SEGMENT_PATTERN % seq


@dataclass(frozen=True, slots=True)
class RecordCommand:
    """What `record_segments_args` needs to record one live source into a folder of .ts files."""

    source: str  # a URL ffmpeg reads itself, a local file, or "pipe:0" (streamlink writes to stdin)
    out_dir: Path
    segment_s: float
    keep_video: bool = True
    realtime: bool = False  # -re: read a file at its own speed, as if it were live
    http_headers: Mapping[str, str] = field(default_factory=dict)
    network_timeout_s: float | None = None  # fail a read that stalls this long (network sources)


def record_segments_args(cmd: RecordCommand) -> list[str]:
    """ffmpeg arguments: copy-codec MPEG-TS files of about `segment_s` each, plus a CSV segment list.

    Timestamps are ffmpeg's normal output clock (the first packet at 0), so the segment list's start
    and end times are seconds from the broadcast's start, and so are the packets' pts inside the files
    (`-muxdelay 0`). The input's own start time is printed by ffmpeg ("start: N") and kept by the
    recorder as the source clock. Each packet is flushed to disk as it is written, so a reader can
    follow the growing file with a delay of a packet, not a segment.
    """
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info"]
    if cmd.realtime:
        args.append("-re")
    is_http = cmd.source.startswith(("http://", "https://"))
    if cmd.network_timeout_s and "://" in cmd.source:
        args += ["-rw_timeout", str(int(cmd.network_timeout_s * 1_000_000))]
    if is_http and cmd.http_headers:
        args += ["-headers", "".join(f"{k}: {v}\r\n" for k, v in cmd.http_headers.items())]
    if not cmd.realtime:
        # A live input arrives in real time: probing the default 5 s of it would hold back the first
        # recorded bytes (and the first alert) of every connection by that much.
        args += ["-analyzeduration", "2000000", "-probesize", "2000000"]
    args += ["-i", cmd.source]
    if cmd.keep_video:
        args += ["-map", "0:v:0?"]
    args += [
        "-map",
        "0:a:0?",
        "-c",
        "copy",
        "-muxdelay",
        "0",
        "-muxpreload",
        "0",
        "-f",
        "segment",
        "-segment_time",
        f"{cmd.segment_s:g}",
        "-segment_format",
        "mpegts",
        # flush every packet and keep audio PES packets small: a follower sees audio within ~0.1 s
        "-segment_format_options",
        "flush_packets=1:pes_payload_size=0",
        "-segment_list",
        str(cmd.out_dir / SEGMENT_LIST),
        "-segment_list_type",
        "csv",
        "-reset_timestamps",
        "0",
        str(cmd.out_dir / SEGMENT_PATTERN),
    ]
    return args


@dataclass(frozen=True, slots=True)
class HlsServeCommand:
    """Replay a media file as a live HLS stream into a folder (for demos, tests and benchmarks)."""

    source: Path
    out_dir: Path
    hls_time_s: float = 2.0
    list_size: int = 6
    start_number: int = 0


def hls_serve_args(cmd: HlsServeCommand) -> list[str]:
    """ffmpeg -re → a sliding-window live playlist `index.m3u8` (old files deleted, no end tag).

    `-muxdelay 0` keeps the stream's timestamps equal to the file's, so a test can map a time in the
    live stream back to the file.
    """
    return [
        ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "error",
        "-re",
        "-i",
        str(cmd.source),
        "-map",
        "0:v:0?",
        "-map",
        "0:a:0?",
        "-c",
        "copy",
        "-muxdelay",
        "0",
        "-muxpreload",
        "0",
        "-f",
        "hls",
        "-hls_time",
        f"{cmd.hls_time_s:g}",
        "-hls_list_size",
        str(cmd.list_size),
        "-start_number",
        str(cmd.start_number),
        "-hls_flags",
        "delete_segments+omit_endlist",
        str(cmd.out_dir / "index.m3u8"),
    ]
