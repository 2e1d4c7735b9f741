"""`livewatch review` and `livewatch evidence` as a user runs them (real processes, real store)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from review_corpus import CorpusStore, shared_store

from alerts.package import verify_package
from review.auth import hash_token

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, input: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LIVEWATCH_DATA_DIR", "LIVEWATCH_DB_URL", "LIVEWATCH_REVIEW_TOKEN")
    }
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        input=input,
        env=env,
        timeout=120,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> CorpusStore:
    return shared_store(tmp_path_factory)


def test_create_user_prints_an_argon2_entry_for_the_config() -> None:
    r = _run("review", "--create-user", "ann", input="a long password\na long password\n")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].strip() == "- username: ann"
    digest = lines[1].split("password_hash:", 1)[1].strip().strip("'")
    assert PasswordHasher().verify(digest, "a long password")
    assert "a long password" not in r.stdout


def test_create_user_refuses_a_short_password() -> None:
    r = _run("review", "--create-user", "ann", input="short\nshort\n")
    assert r.returncode == 2 and "at least 8 characters" in r.stderr


def test_create_token_prints_the_token_once_and_its_sha256() -> None:
    r = _run("review", "--create-token", "robot")
    assert r.returncode == 0, r.stderr
    token = r.stdout.splitlines()[0].split("token: ", 1)[1]
    assert f"sha256: {hash_token(token)}" in r.stdout and "- name: robot" in r.stdout


def test_review_without_users_says_how_to_make_one(tmp_path: Path) -> None:
    r = _run("review", "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 2
    assert "livewatch review --create-user NAME" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_review_config_names_file_line_and_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "review:\n  users:\n    - username: ann\n      password_hash: plaintext\n", encoding="utf-8"
    )
    r = _run("review", "--config", str(cfg), "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 2
    assert "bad.yaml" in r.stderr and "password_hash" in r.stderr and "argon2" in r.stderr


@pytest.mark.model  # the shared store is scanned with the embedded Whisper model
def test_evidence_export_then_verify_then_tamper(store: CorpusStore, tmp_path: Path) -> None:
    a = store.alerts[0]
    out = tmp_path / "cases"
    out.mkdir()
    r = _run(
        "evidence", "export", a.alert_id, "--data-dir", str(store.data_dir), "--out", str(out), "--by", "ann"
    )
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.strip())
    assert path == out / f"livewatch-evidence-{a.alert_id}.zip" and path.is_file()
    manifest_sha = r.stderr.split("manifest SHA-256 ", 1)[1].split()[0]
    report = verify_package(path, manifest_sha)
    assert report.ok
    with zipfile.ZipFile(path) as zf:
        assert json.loads(zf.read("manifest.json"))["exported_by"] == "ann"
    ok = _run("evidence", "verify", str(path), "--manifest-sha256", manifest_sha)
    assert ok.returncode == 0 and "OK: all" in ok.stdout
    # change one byte of the transcript inside the zip and verify again
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "evidence/transcript.json":
                data = data[:10] + bytes([data[10] ^ 0x01]) + data[11:]
            dst.writestr(info, data)
    bad = _run("evidence", "verify", str(tampered))
    assert bad.returncode == 1
    assert "CHANGED    evidence/transcript.json" in bad.stdout
    assert "FAILED: evidence/transcript.json changed or damaged" in bad.stdout


@pytest.mark.model
def test_evidence_export_of_an_unknown_alert_is_a_usage_error(store: CorpusStore, tmp_path: Path) -> None:
    r = _run("evidence", "export", "no-such-alert", "--data-dir", str(store.data_dir), "--out", str(tmp_path))
    assert r.returncode == 2 and "no alert with id no-such-alert" in r.stderr
    missing = _run("evidence", "verify", str(tmp_path / "nothing.zip"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
