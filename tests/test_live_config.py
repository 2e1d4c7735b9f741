"""Monitor config (app/monitor_config.py) and the ingest command builders, as pure functions."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from app.config import ConfigError
from app.monitor_config import load_monitor_config
from ingest import ffmpeg
from ingest.config import BackoffConfig, IngestConfig
from ingest.recorder import backoff_delay, choose_via, read_segment_list, streamlink_args

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "monitor.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_the_example_config_is_valid_and_merges_defaults_into_streams() -> None:
    cfg = load_monitor_config(ROOT / "configs" / "monitor.example.yaml")
    streams = {s.id: s for s in cfg.streams_resolved()}
    assert set(streams) == {"douyin-shop-1", "partner-hls", "studio-rtmp"}  # replay-demo is disabled
    douyin = streams["douyin-shop-1"]
    assert douyin.http_cookies and "Referer" in douyin.http_headers
    assert cfg.pre_post_roll(douyin) == (10.0, 8.0)
    assert streams["partner-hls"].retention.max_age_h == 168 and streams["partner-hls"].retention.max_gb == 50
    assert streams["studio-rtmp"].keeps_video(False) is False and douyin.keeps_video(False) is True
    assert cfg.live_asr_config().temperatures == (0.0,)


def test_nested_sections_merge_key_by_key(tmp_path: Path) -> None:
    cfg = load_monitor_config(
        write(
            tmp_path,
            """
defaults:
  http_headers: {User-Agent: ua}
  reconnect: {initial_s: 5, max_s: 30}
streams:
  - id: a
    url: hls://http://x/index.m3u8
    http_headers: {Referer: r}
    reconnect: {max_s: 10}
""",
        )
    )
    (a,) = cfg.streams_resolved()
    assert a.http_headers == {"User-Agent": "ua", "Referer": "r"}
    assert (a.reconnect.initial_s, a.reconnect.max_s) == (5.0, 10.0)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("streams:\n  - id: a\n    url: x\n    segment_s: -1\n", ":4: streams.0.segment_s:"),
        ("defaults:\n  segment_s: 2\n  colour: red\nstreams:\n  - {id: a, url: x}\n", ":3: defaults.colour:"),
        ("streams:\n  - {id: a, url: x}\n  - {id: a, url: y}\n", "used twice"),
        ("streams: []\n", ":1: streams:"),
        ("streams:\n  - {id: 'bad id', url: x}\n", "streams.0.id"),
        ("webhooks:\n  - url: ftp://x\nstreams:\n  - {id: a, url: x}\n", ":2: webhooks.0.url"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path: Path, text: str, where: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_monitor_config(path)
    assert str(e.value).startswith(str(path))
    assert where in str(e.value)


@pytest.mark.parametrize(
    ("url", "via"),
    [
        ("https://live.douyin.com/123", "streamlink"),
        ("hls://http://127.0.0.1:8000/index.m3u8", "streamlink"),
        ("https://cdn.example.org/live/x.m3u8", "streamlink"),
        ("rtmp://127.0.0.1/live/x", "ffmpeg"),
        ("https://pull.example.org/live/x.flv?token=1", "ffmpeg"),
        ("http://pull.example.org/live/x.ts", "ffmpeg"),
        ("examples/corpus/broadcast_0.mp4", "ffmpeg"),
        ("/abs/file.mkv", "ffmpeg"),
    ],
)
def test_source_routing(url: str, via: str) -> None:
    assert choose_via(url) == via
    assert choose_via(url, "streamlink") == "streamlink"


def test_streamlink_command_carries_platform_options() -> None:
    cfg = IngestConfig(
        http_headers={"Referer": "https://live.douyin.com/"},
        http_cookies={"ttwid": "abc"},
        quality="720p,best",
        streamlink_args=["--douyin-foo"],
        stall_timeout_s=7,
    )
    args = streamlink_args("https://live.douyin.com/1", cfg)
    assert args[:3] == [sys.executable, "-m", "ingest.hls_join"]  # streamlink's CLI, plus HLS rejoin
    assert args[3:5] == ["--poll", "0.5"]  # reload the playlist at least every hls_poll_s
    assert "--resume-after" not in args and "--wait" not in args
    resumed = streamlink_args("https://live.douyin.com/1", cfg, resume_after=41)
    assert resumed[5:7] == ["--resume-after", "41"] and resumed[7:] == args[5:]
    waiting = streamlink_args("https://live.douyin.com/1", cfg, resume_after=41, wait_s=30)
    assert waiting[7:9] == ["--wait", "30.0"] and waiting[9:] == args[5:]
    assert "--stdout" in args and args[-2:] == ["https://live.douyin.com/1", "720p,best"]
    assert args[args.index("--http-header") + 1] == "Referer=https://live.douyin.com/"
    assert args[args.index("--http-cookie") + 1] == "ttwid=abc"
    assert args[args.index("--stream-timeout") + 1] == "7"
    assert "--douyin-foo" in args


def test_record_command_segments_and_flushes(tmp_path: Path) -> None:
    file_args = ffmpeg.record_segments_args(
        ffmpeg.RecordCommand("in.mp4", tmp_path, 2.0, keep_video=False, realtime=True)
    )
    assert "-re" in file_args and "0:v:0?" not in file_args
    assert file_args[file_args.index("-segment_time") + 1] == "2"
    assert "flush_packets=1" in file_args[file_args.index("-segment_format_options") + 1]
    assert file_args[-1] == str(tmp_path / ffmpeg.SEGMENT_PATTERN)
    http_args = ffmpeg.record_segments_args(
        ffmpeg.RecordCommand(
            "https://x/live.flv", tmp_path, 4.0, http_headers={"Referer": "r"}, network_timeout_s=10
        )
    )
    assert http_args[http_args.index("-headers") + 1] == "Referer: r\r\n"
    assert http_args[http_args.index("-rw_timeout") + 1] == "10000000"
    assert "0:v:0?" in http_args and "-re" not in http_args


def test_backoff_grows_to_its_ceiling() -> None:
    cfg = BackoffConfig(initial_s=1, factor=2, max_s=10)
    assert [backoff_delay(n, cfg) for n in range(6)] == [1, 2, 4, 8, 10, 10]


def test_segment_list_ignores_a_half_written_line(tmp_path: Path) -> None:
    p = tmp_path / "segments.csv"
    p.write_text("seg_000000.ts,0.000000,2.080000\nseg_000001.ts,2.08", encoding="utf-8")
    assert read_segment_list(p) == [("seg_000000.ts", 0.0, 2.08)]


def test_hls_rejoin_starts_at_the_first_segment_not_recorded() -> None:
    from ingest.hls_join import choose_start

    assert choose_start(10, 17, None, 16) == 16  # first connection: streamlink's live edge
    assert choose_start(10, 17, 12, 16) == 13  # the missed segments are still offered: all of them
    assert choose_start(10, 17, 17, 16) == 18  # nothing missed yet: wait for the next one
    assert choose_start(10, 17, 4, 16) == 10  # some fell out of the window: the oldest offered
    assert choose_start(0, 7, 40, 6) == 6  # numbering restarted (a new session): the live edge


def test_hls_join_markers_parse() -> None:
    from ingest.hls_join import parse_marker

    j = parse_marker("livewatch-hls join first=3 last=10 start=5 resume_after=4")
    assert j is not None and (j.kind, j.first, j.last, j.start, j.resume_after) == ("join", 3, 10, 5, 4)
    j = parse_marker("livewatch-hls join first=3 last=10 start=9 resume_after=-")
    assert j is not None and j.resume_after is None
    d = parse_marker("livewatch-hls done 12")
    assert d is not None and d.seq == 12
    assert parse_marker("[cli][info] Opening stream: 720p (hls)") is None
    assert parse_marker("livewatch-hls done x") is None
    w = parse_marker("livewatch-hls waiting")
    assert w is not None and w.kind == "waiting"


def test_hls_join_wrapper_options() -> None:
    from ingest.hls_join import wrapper_args

    assert wrapper_args(["--stdout", "u", "best"]) == (None, None, None, ["--stdout", "u", "best"])
    assert wrapper_args(["--poll", "0.5", "--resume-after", "7", "--wait", "40", "--stdout", "u"]) == (
        7,
        0.5,
        40.0,
        ["--stdout", "u"],
    )


def test_media_gap_is_measured_on_the_source_clock() -> None:
    from ingest.recorder import media_gap

    assert media_gap(100.0, 118.5, wall_elapsed_s=12.0) == pytest.approx(18.5)
    assert media_gap(100.0, 100.02, wall_elapsed_s=14.0) == pytest.approx(0.02)
    assert media_gap(100.0, 98.0, wall_elapsed_s=14.0) == 0.0  # overlap: recorded twice, no hole
    assert media_gap(None, 98.0, wall_elapsed_s=14.0) is None
    assert media_gap(100.0, None, wall_elapsed_s=14.0) is None
    assert media_gap(5000.0, 3.0, wall_elapsed_s=14.0) is None  # the clock was reset
    assert media_gap(100.0, 9000.0, wall_elapsed_s=14.0) is None  # ran ahead of real time: not one clock
