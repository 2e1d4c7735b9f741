"""load_audio on real media made with the real ffmpeg: good files decode, bad ones give one clear line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

import ingest.errors
from asr.audio import SAMPLE_RATE, load_audio
from asr.errors import MediaError

CORPUS = Path(__file__).resolve().parents[1] / "examples" / "corpus"


def ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True
    )


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("asr_media")
    # 3 s stereo 44.1 kHz tone + video, in mp4 (moov at the end) and mpeg-ts (live segments)
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:duration=3:sample_rate=44100", "-ac", "2"]
    video = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=3", "-pix_fmt", "yuv420p"]
    ffmpeg(*tone, *video, "-c:a", "aac", "-shortest", str(d / "av.mp4"))
    ffmpeg(*tone, *video, "-c:a", "aac", "-movflags", "+faststart", "-shortest", str(d / "faststart.mp4"))
    ffmpeg(*tone, *video, "-c:a", "aac", "-shortest", "-f", "mpegts", str(d / "av.ts"))
    ffmpeg(*video, str(d / "video_only.mp4"))
    return d


def truncate_copy(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def test_corpus_flac_decodes_to_16k_mono_float32() -> None:
    audio = load_audio(CORPUS / "clips" / "d02.flac")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / SAMPLE_RATE - 5.112) < 0.05  # clips.jsonl duration_s
    assert 0.01 < float(np.abs(audio).max()) <= 1.0


def test_video_with_stereo_audio_is_resampled_to_mono(media: Path) -> None:
    for name in ("av.mp4", "av.ts"):
        audio = load_audio(media / name)
        assert audio.ndim == 1
        assert abs(len(audio) / SAMPLE_RATE - 3.0) < 0.1
        # a 440 Hz tone: its spectrum peaks at 440 Hz after resampling
        spectrum = np.abs(np.fft.rfft(audio[:SAMPLE_RATE]))
        assert abs(int(np.argmax(spectrum)) - 440) <= 2


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"nope\.flac: no such file"):
        load_audio(tmp_path / "nope.flac")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="is a directory"):
        load_audio(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(MediaError, match="empty file"):
        load_audio(tmp_path / "empty.wav")


def test_text_file_renamed_mp4(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("这不是视频, just some notes\n" * 20, encoding="utf-8")
    with pytest.raises(MediaError, match=r"notes\.mp4: cannot be opened as media"):
        load_audio(fake)


def test_video_without_audio(media: Path) -> None:
    with pytest.raises(MediaError, match=r"video_only\.mp4: has no audio stream \(streams: video\)"):
        load_audio(media / "video_only.mp4")


def test_truncated_mp4_without_index(media: Path, tmp_path: Path) -> None:
    # moov at the end: half a file has no index at all
    with pytest.raises(MediaError, match="damaged/truncated"):
        load_audio(truncate_copy(media / "av.mp4", tmp_path / "cut.mp4"))


def test_truncated_faststart_mp4_reports_declared_duration(media: Path, tmp_path: Path) -> None:
    cut = truncate_copy(media / "faststart.mp4", tmp_path / "cut_fast.mp4")
    with pytest.raises(
        MediaError, match=r"truncated: decoded [\d.]+ s of audio but the file declares 3\.0 s"
    ):
        load_audio(cut)
    partial = load_audio(cut, allow_partial=True)
    assert 0 < len(partial) < 3 * SAMPLE_RATE


def test_truncated_flac(tmp_path: Path) -> None:
    cut = truncate_copy(CORPUS / "clips" / "d02.flac", tmp_path / "cut.flac")
    with pytest.raises(MediaError, match="truncated"):
        load_audio(cut)
    head = truncate_copy(CORPUS / "clips" / "d02.flac", tmp_path / "head.flac", fraction=0.001)
    with pytest.raises(MediaError):
        load_audio(head)


def test_truncated_live_ts_segment_keeps_what_is_there(media: Path, tmp_path: Path) -> None:
    # MPEG-TS declares no duration; a segment cut mid-write is still usable audio
    audio = load_audio(truncate_copy(media / "av.ts", tmp_path / "cut.ts"))
    assert 0.5 * SAMPLE_RATE < len(audio) < 3 * SAMPLE_RATE


def test_media_error_names_path_and_reason(tmp_path: Path) -> None:
    with pytest.raises(MediaError) as info:
        load_audio(tmp_path / "x.wav")
    assert isinstance(info.value, ingest.errors.MediaError)
    assert info.value.path == str(tmp_path / "x.wav") and info.value.reason == "no such file"
    assert "\n" not in str(info.value)
