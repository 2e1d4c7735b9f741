"""Evidence integrity in the open: signed capture manifests, the background verification pass over the
evidence store (stored results in `evidence_checks`), and what the queue, the alert page, /metrics,
`evidence verify-store` and `evidence verify` show from it. The transcript is scripted (no model);
ffmpeg, SQLite and the pipeline are real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from alerts.evidence import sha256_file
from alerts.package import verify_package
from alerts.signing import check_signature, load_or_create_site_key, site_public_key
from app.config import RootConfig
from app.pipeline import Scanner, ScanOptions
from asr.fake import FakeTranscriber
from review.app import create_app
from review.auth import hash_token
from review.config import ApiToken, ReviewConfig
from review.detail import export_package
from review.evidence_checks import VerifyScheduler, verify_store
from store.db import Database
from store.models import EvidenceCheck, EvidenceFileRow

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "tok-for-the-verify-pass"
LINES = [(13.0, 16.0, "这款手机壳是顶级材质"), (40.0, 43.0, "全网最低价只要九十九")]


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> tuple[Path, list[str]]:
    data = tmp_path_factory.mktemp("verify") / "lw-data"
    db = Database.for_data_dir(data)
    scanner = Scanner(RootConfig(), db, transcriber=FakeTranscriber.from_lines(LINES), data_dir=data)
    result = scanner.scan(corpus / "broadcast_0.mp4", ScanOptions(stream_id="room-v", video=False))
    db.dispose()
    ids = [a["alert_id"] for a in result.alerts]
    assert len(ids) >= 2, "the scripted lines raised too few alerts"
    return data, ids


@pytest.fixture()
def data(scanned: tuple[Path, list[str]], tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(scanned[0], copy)  # damage a copy; the other tests keep theirs
    return copy


def _client(data: Path) -> tuple[TestClient, Database]:
    db = Database.for_data_dir(data)
    cfg = ReviewConfig(api_tokens=[ApiToken(name="t", sha256=hash_token(TOKEN))])
    app = create_app(db, data, cfg, tool_version="test")
    c = TestClient(app, base_url="http://127.0.0.1:8765", headers={"Authorization": f"Bearer {TOKEN}"})
    return c, db


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LIVEWATCH_DATA_DIR", "LIVEWATCH_DB_URL")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )


def test_capture_manifest_is_signed_by_the_site_key(scanned: tuple[Path, list[str]]) -> None:
    data, ids = scanned
    key = site_public_key(data)
    assert key is not None  # made on first write, in the data directory
    manifest = json.loads((data / "evidence" / ids[0] / "manifest.json").read_text(encoding="utf-8"))
    sig = check_signature(manifest, [key])
    assert sig.status == "valid" and sig.trusted
    forged = {**manifest, "files": [{**manifest["files"][0], "sha256": "0" * 64}, *manifest["files"][1:]]}
    assert check_signature(forged, [key]).status == "invalid"  # a re-hashed manifest no longer verifies


def test_pass_stores_changed_and_missing_and_the_api_shows_them(
    data: Path, scanned: tuple[Path, list[str]]
) -> None:
    ids = scanned[1]
    changed_id, missing_id = ids[0], ids[1]
    clip = next((data / "evidence" / changed_id).glob("clip.*"))
    raw = bytearray(clip.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # same size: only the hash can tell
    clip.write_bytes(bytes(raw))
    (data / "evidence" / missing_id / "transcript.json").unlink()

    db = Database.for_data_dir(data)
    try:
        result = verify_store(db, data)
        assert not result.ok
        assert result.states["changed"] == 1 and result.states["missing"] == 1
        assert {(a, n, s) for a, n, s in result.bad} == {
            (changed_id, clip.name, "changed"),
            (missing_id, "transcript.json", "missing"),
        }
        assert result.signatures["valid"] == result.alerts
        with db.session() as s:
            rows = {(r.alert_id, r.name): r for r in s.scalars(select(EvidenceCheck))}
            n_files = len(list(s.scalars(select(EvidenceFileRow))))
        assert len(rows) == n_files
        assert rows[(changed_id, clip.name)].state == "changed"
        assert rows[(changed_id, clip.name)].sha256_seen == sha256_file(clip)
        assert rows[(missing_id, "transcript.json")].sha256_seen is None
        assert rows[(changed_id, "manifest.json")].signature == "valid"
    finally:
        db.dispose()

    c, db = _client(data)
    try:
        items = {it["alert_id"]: it for it in c.get("/api/alerts").json()["items"]}
        assert items[changed_id]["evidence_state"] == "changed"
        assert items[missing_id]["evidence_state"] == "missing"
        assert all(
            it["evidence_state"] == "ok" for i, it in items.items() if i not in (changed_id, missing_id)
        )
        d = c.get(f"/api/alerts/{changed_id}").json()
        states = {f["name"]: (f["state"], f["checked"]) for f in d["files"]}
        assert states[clip.name] == ("changed", "pass")  # from the pass, without a click or a wait
        assert d["evidence_state"] == "changed" and d["manifest_signature"] == "valid"
        d = c.get(f"/api/alerts/{missing_id}").json()
        assert {f["name"]: f["state"] for f in d["files"]}["transcript.json"] == "missing"
        metrics = c.get("/metrics").text
        assert 'livewatch_evidence_files{state="changed"} 1' in metrics
        assert 'livewatch_evidence_files{state="missing"} 1' in metrics
        assert f'livewatch_evidence_files{{state="ok"}} {n_files - 2}' in metrics
        last = next(
            ln for ln in metrics.splitlines() if ln.startswith("livewatch_evidence_last_check_timestamp")
        )
        assert abs(float(last.split()[-1]) - time.time()) < 600

        # the file put back and Verify clicked: the stored state follows
        clip.write_bytes(
            bytes(raw[: len(raw) // 2]) + bytes([raw[len(raw) // 2] ^ 0x01]) + bytes(raw[len(raw) // 2 + 1 :])
        )
        v = c.get(f"/api/alerts/{changed_id}/verify").json()
        assert v["ok"] and v["manifest_signature"] == "valid"
        items = {it["alert_id"]: it for it in c.get("/api/alerts").json()["items"]}
        assert items[changed_id]["evidence_state"] == "ok"
    finally:
        c.close()
        db.dispose()


def test_verify_store_cli_names_damage_and_exits_1(data: Path, scanned: tuple[Path, list[str]]) -> None:
    ok = _cli("evidence", "verify-store", "--data-dir", str(data))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip().splitlines()[-1].startswith("OK:")
    aid = scanned[1][0]
    clip = next((data / "evidence" / aid).glob("clip.*"))
    clip.unlink()
    bad = _cli("evidence", "verify-store", "--data-dir", str(data))
    assert bad.returncode == 1
    assert f"MISSING    {aid}/{clip.name}" in bad.stdout
    assert "1 missing" in bad.stdout


def test_unsigned_old_manifest_is_reported_unsigned_not_failed(
    data: Path, scanned: tuple[Path, list[str]]
) -> None:
    aid = scanned[1][0]
    path = data / "evidence" / aid / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    del manifest["signature"]  # as written before manifests were signed
    path.write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    db = Database.for_data_dir(data)
    try:
        with db.session() as s:  # the database's record of it, as it was at capture
            row = s.scalar(
                select(EvidenceFileRow).where(
                    EvidenceFileRow.alert_id == aid, EvidenceFileRow.name == "manifest.json"
                )
            )
            assert row is not None
            row.sha256 = sha256_file(path)
            s.commit()
        result = verify_store(db, data)
        assert result.ok and result.signatures["unsigned"] == 1
        with db.session() as s:
            sig = s.scalar(
                select(EvidenceCheck.signature).where(
                    EvidenceCheck.alert_id == aid, EvidenceCheck.name == "manifest.json"
                )
            )
        assert sig == "unsigned"
        # a package of it verifies, with the capture manifest reported unsigned
        with db.session() as s:
            out = export_package(
                s,
                aid,
                data.parent / "pkg.zip",
                exported_by="t",
                tool_version="test",
                timezone="Asia/Shanghai",
                signing_key=load_or_create_site_key(data),
                data_dir=data,
            )
        report = verify_package(out.path, None, trusted_keys=[site_public_key(data) or b""])
        assert report.ok, report.problems
        assert report.capture_signature is not None and report.capture_signature.status == "unsigned"
    finally:
        db.dispose()


def test_package_verify_checks_the_capture_manifest_signature(
    data: Path, scanned: tuple[Path, list[str]]
) -> None:
    aid = scanned[1][0]
    db = Database.for_data_dir(data)
    try:
        with db.session() as s:
            out = export_package(
                s,
                aid,
                data.parent / "pkg.zip",
                exported_by="t",
                tool_version="test",
                timezone="Asia/Shanghai",
                signing_key=load_or_create_site_key(data),
                data_dir=data,
            )
    finally:
        db.dispose()
    report = verify_package(out.path, None, trusted_keys=[site_public_key(data) or b""])
    assert report.ok, report.problems
    assert report.capture_signature is not None
    assert report.capture_signature.status == "valid" and report.capture_signature.trusted
    r = _cli("evidence", "verify", str(out.path), "--data-dir", str(data))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "capture    manifest signed by sha256:" in r.stdout


def test_background_pass_runs_on_its_schedule(data: Path) -> None:
    db = Database.for_data_dir(data)
    sched = VerifyScheduler(db, data, 3600.0, first_delay_s=0.0)
    try:
        sched.start()
        deadline = time.monotonic() + 60
        while sched.last is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sched.last is not None and sched.last.ok
        with db.session() as s:
            assert s.scalar(select(EvidenceCheck.id).limit(1)) is not None
    finally:
        sched.stop()
        db.dispose()
    assert VerifyScheduler(db, data, 0.0)._thread is None  # 0 = off
    assert RootConfig().evidence.verify_interval_s == 3600.0
