"""Shared fixtures: the corpus inside the project, media generated with real ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "examples" / "corpus"


@pytest.fixture(scope="session")
def corpus() -> Path:
    return CORPUS


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    from ingest.ffmpeg import ffmpeg_exe

    return ffmpeg_exe()


def run_ffmpeg(ffmpeg: str, *args: str) -> None:
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="session")
def video_no_audio(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Path:
    out = tmp_path_factory.mktemp("media") / "silent_video.mp4"
    run_ffmpeg(
        ffmpeg, "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10:duration=3", "-c:v", "libx264", str(out)
    )
    return out
