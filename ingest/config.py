"""Configuration of live ingest: where a stream comes from and how it is recorded.

`IngestConfig` is the per-stream part of the monitor config (`configs/monitor.example.yaml`): the
monitor's `defaults:` section and each `streams:` entry hold the same fields, merged global → stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BackoffConfig", "IngestConfig"]


class BackoffConfig(BaseModel):
    """Reconnect policy for a dropped or offline room: exponential backoff with a ceiling."""

    model_config = ConfigDict(extra="forbid")

    initial_s: float = Field(1.0, gt=0, description="Wait before the first reconnect attempt.")
    factor: float = Field(2.0, ge=1.0, description="Each failed attempt multiplies the wait by this.")
    max_s: float = Field(
        60.0, gt=0, description="Longest wait between attempts (an offline room is polled this often)."
    )
    reset_after_s: float = Field(
        30.0, ge=0, description="A connection that recorded at least this long resets the wait to initial_s."
    )
    rejoin_window_s: float = Field(
        60.0,
        ge=0,
        description=(
            "For this long after a connection that recorded data dropped, retry every initial_s instead of "
            "backing off: a live HLS playlist still offers the missed media for its window (often 10-60 s), "
            "and every second waited can push some of it out (0 = always back off)."
        ),
    )


class IngestConfig(BaseModel):
    """How one stream is opened and recorded into copy-codec MPEG-TS files."""

    model_config = ConfigDict(extra="forbid")

    via: Literal["auto", "streamlink", "ffmpeg"] = Field(
        "auto",
        description=(
            "'auto': ffmpeg reads rtmp(s)://, srt://, http(s) URLs ending in .flv/.ts and local files directly; "
            "streamlink resolves everything else (platform room URLs, hls://...)."
        ),
    )
    quality: str = Field(
        "best",
        description="streamlink quality list, e.g. 'best', '720p,best' or 'audio_only,worst' (streamlink only).",
    )
    record_video: bool | None = Field(
        None,
        description="Keep the video stream in recordings; null = only when video analysis is enabled (else audio only).",
    )
    segment_s: float = Field(
        2.0,
        gt=0,
        le=60,
        description=(
            "Target length of a recorded file. Files with video are cut at keyframes, so they last at least "
            "one GOP. Live ASR reads the growing file, so alert latency does not depend on this."
        ),
    )
    http_headers: dict[str, str] = Field(
        default_factory=dict, description="HTTP headers for every request (User-Agent, Referer, ...)."
    )
    http_cookies: dict[str, str] = Field(
        default_factory=dict,
        description="Cookies for every request (some platforms need a logged-in cookie).",
    )
    cookies_file: Path | None = Field(
        None, description="A Netscape cookies.txt passed to streamlink (--http-cookies-file)."
    )
    streamlink_args: list[str] = Field(
        default_factory=list,
        description="Extra streamlink command-line arguments, e.g. plugin options ['--twitch-disable-ads'].",
    )
    hls_live_edge: int = Field(
        2,
        ge=1,
        le=10,
        description=(
            "streamlink --hls-live-edge: HLS segments behind the live edge to start at (the first "
            "connection; a reconnect rejoins where the recording stopped, see hls_rejoin)."
        ),
    )
    hls_rejoin: bool = Field(
        True,
        description=(
            "After a drop, rejoin an HLS stream at the first segment not yet recorded while the playlist "
            "still offers it (else at its oldest segment), so an outage shorter than the playlist window "
            "loses no media; false: rejoin at the live edge (hls_live_edge), as on the first connection."
        ),
    )
    hls_playlist_reload_s: float | None = Field(
        None,
        gt=0,
        description=(
            "streamlink --hls-playlist-reload-time: poll a live playlist this often (null = streamlink's "
            "default, the target duration). Shorter finds new segments sooner, at more requests."
        ),
    )
    hls_poll_s: float = Field(
        0.5,
        gt=0,
        le=10,
        description=(
            "HLS via streamlink: reload a live playlist at least this often while recording (streamlink "
            "alone waits up to a target duration), and after a drop poll a playlist that does not answer "
            "twice as often, for up to reconnect.rejoin_window_s, instead of reconnecting after backoff: "
            "both delays come out of the playlist window, which is all a rejoin can recover."
        ),
    )
    realtime: bool = Field(
        True,
        description="Replay a local file at its own speed (ffmpeg -re), as if it were live; false reads it at full speed.",
    )
    stall_timeout_s: float = Field(
        12.0,
        gt=0,
        description=(
            "No new recorded data for this long counts as a drop: the connection is closed, a gap is "
            "stored and the stream is reconnected (a new broadcast record)."
        ),
    )
    reconnect: BackoffConfig = Field(default_factory=BackoffConfig, description="Reconnect policy.")

    def keeps_video(self, video_analysis: bool) -> bool:
        return self.record_video if self.record_video is not None else video_analysis
