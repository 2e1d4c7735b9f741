"""Bad input: one clear line naming the file (and line/field for configs), exit 2, no traceback,
nothing written to the store. Runs the real `livewatch` entry point in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LIVEWATCH_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


def assert_clean_failure(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def assert_store_empty(data_dir: Path) -> None:
    db = data_dir / "livewatch.db"
    if db.exists():
        import sqlite3

        con = sqlite3.connect(db)
        try:
            for table in ("broadcasts", "utterances", "alerts"):
                assert con.execute(f"select count(*) from {table}").fetchone()[0] == 0
        finally:
            con.close()
    assert not (data_dir / "evidence").exists() or not any((data_dir / "evidence").iterdir())


@pytest.fixture
def bad_media(tmp_path: Path, corpus: Path, video_no_audio: Path) -> dict[str, Path]:
    text = tmp_path / "notes.mp4"
    text.write_text("这不是视频\n" * 50, encoding="utf-8")
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes((corpus / "broadcast_0.mp4").read_bytes()[:200_000])
    return {"missing": tmp_path / "nope.mp4", "directory": tmp_path, "text": text, "truncated": truncated,
            "no_audio": video_no_audio}


@pytest.mark.parametrize(("kind", "needle"), [
    ("missing", "no such file"), ("directory", "directory"), ("text", "not"), ("truncated", "truncated"),
    ("no_audio", "no audio"),
])
def test_bad_media_is_refused_with_one_line(bad_media: dict[str, Path], tmp_path: Path, kind: str,
                                            needle: str) -> None:
    data = tmp_path / "data"
    proc = run_cli("scan", str(bad_media[kind]), data_dir=data)
    assert_clean_failure(proc, str(bad_media[kind]), needle)
    assert_store_empty(data)


def test_config_yaml_error_names_file_and_line(tmp_path: Path, corpus: Path) -> None:
    cfg = tmp_path / "lw.yaml"
    cfg.write_text("asr:\n  model: base\n  beam_size: [1,\n", encoding="utf-8")
    proc = run_cli("scan", "--config", str(cfg), str(corpus / "clips" / "d01.flac"), data_dir=tmp_path / "d")
    assert_clean_failure(proc, f"{cfg}:", "YAML error")


def test_config_unknown_field_names_file_line_and_field(tmp_path: Path, corpus: Path) -> None:
    cfg = tmp_path / "lw.yaml"
    cfg.write_text("asr:\n  model: base\n  beem_size: 3\n", encoding="utf-8")
    proc = run_cli("scan", "--config", str(cfg), str(corpus / "clips" / "d01.flac"), data_dir=tmp_path / "d")
    assert_clean_failure(proc, f"{cfg}:3:", "asr.beem_size")
    assert_store_empty(tmp_path / "d")


def test_unreadable_model_directory_is_named(tmp_path: Path, corpus: Path) -> None:
    model_dir = tmp_path / "no-model-here"
    model_dir.mkdir()
    proc = run_cli("scan", "--model", str(model_dir), str(corpus / "clips" / "d01.flac"), data_dir=tmp_path / "d")
    assert_clean_failure(proc, str(model_dir))
    assert_store_empty(tmp_path / "d")


def test_broken_rule_pack_is_refused_before_transcribing(tmp_path: Path, corpus: Path) -> None:
    rules = tmp_path / "site-rules"
    rules.mkdir()
    (rules / "site.yaml").write_text("rules:\n  - id: x\n    category: false_claim\n    bogus_field: 1\n",
                                     encoding="utf-8")
    cfg = tmp_path / "lw.yaml"
    cfg.write_text(f"rules:\n  dirs: ['{rules}']\n", encoding="utf-8")
    proc = run_cli("scan", "--config", str(cfg), str(corpus / "clips" / "d01.flac"), data_dir=tmp_path / "d")
    assert_clean_failure(proc, "site.yaml:")
    assert_store_empty(tmp_path / "d")
