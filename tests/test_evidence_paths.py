"""Evidence paths that move with the data: stored relative to the data directory, resolved when read.

A scan run from one folder with a relative data directory (the quick start), then the whole data
directory moved, then the review API (alert page, clip, snapshot, Verify) and `evidence export` /
`evidence verify` used from a third folder: every file is found and verifies. The evidence file states
on the alert page (missing / changed without a click). Revision 0003 rewriting an old store's paths.
The transcript is scripted (no model); ffmpeg, SQLite and the pipeline are real.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select

from app.config import RootConfig
from app.pipeline import Scanner, ScanOptions
from asr.fake import FakeTranscriber
from review.app import create_app
from review.auth import hash_token
from review.config import ApiToken, ReviewConfig
from store.db import Database
from store.migrations import alembic_config
from store.models import AlertRow, EvidenceFileRow
from store.paths import resolve_stored, to_stored

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "tok-for-the-move-test"
LINES = [(13.0, 16.0, "这款手机壳是顶级材质"), (40.0, 43.0, "全网最低价只要九十九")]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LIVEWATCH_DATA_DIR", "LIVEWATCH_DB_URL")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )


def test_stored_paths_are_relative_to_the_data_dir_and_resolve_against_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert to_stored(data / "evidence" / "a1", data) == "evidence/a1"
    assert to_stored(tmp_path / "elsewhere" / "a1", data) == str((tmp_path / "elsewhere" / "a1").resolve())
    link = tmp_path / "link"
    data.mkdir()
    link.symlink_to(data)  # the same folder reached through a link (a mount point, say)
    assert to_stored(link / "evidence" / "a1", data) == "evidence/a1"
    assert resolve_stored("evidence/a1", tmp_path / "moved") == tmp_path / "moved" / "evidence" / "a1"
    assert resolve_stored("/abs/evidence/a1", tmp_path / "moved") == Path("/abs/evidence/a1")
    assert to_stored("x/y", None) == "x/y"  # no data directory known: as given


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> tuple[Path, list[str]]:
    """Scan broadcast_0.mp4 from folder A into the relative data dir `livewatch-data`, then move the data
    directory to another place. Returns (new data dir, alert ids)."""
    base = tmp_path_factory.mktemp("move")
    first = base / "A"
    first.mkdir()
    old_cwd = Path.cwd()
    os.chdir(first)
    try:
        rel = Path("livewatch-data")
        db = Database.for_data_dir(rel)
        scanner = Scanner(RootConfig(), db, transcriber=FakeTranscriber.from_lines(LINES), data_dir=rel)
        result = scanner.scan(corpus / "broadcast_0.mp4", ScanOptions(stream_id="room-a", video=False))
        with db.session() as s:
            stored = {a.id: a.evidence_dir for a in s.scalars(select(AlertRow))}
        db.dispose()
    finally:
        os.chdir(old_cwd)
    ids = [a["alert_id"] for a in result.alerts]
    assert ids, "the scripted lines raised no alert"
    assert stored == {i: f"evidence/{i}" for i in ids}  # relative to the data directory, not to folder A
    target = base / "elsewhere" / "lw-data"
    target.parent.mkdir()
    shutil.move(str(first / "livewatch-data"), str(target))
    return target, ids


@pytest.fixture()
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cwd = tmp_path / "C"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def _client(data: Path) -> tuple[TestClient, Database]:
    db = Database.for_data_dir(data)
    cfg = ReviewConfig(api_tokens=[ApiToken(name="t", sha256=hash_token(TOKEN))])
    app = create_app(db, data, cfg, tool_version="test")
    c = TestClient(app, base_url="http://127.0.0.1:8765", headers={"Authorization": f"Bearer {TOKEN}"})
    return c, db


def test_review_api_finds_every_file_after_the_data_dir_moved(
    moved: tuple[Path, list[str]], elsewhere: Path
) -> None:
    data, ids = moved
    c, db = _client(data)
    try:
        for aid in ids:
            d = c.get(f"/api/alerts/{aid}").json()
            assert d["clip"] is not None and d["clip"]["element"] == "video"
            assert d["transcript"] and d["transcript"]["utterances"]
            assert d["snapshot_url"] and c.get(d["snapshot_url"]).status_code == 200
            clip = c.get(d["clip"]["url"], headers={"Range": "bytes=0-99"})
            assert clip.status_code == 206 and len(clip.content) == 100
            assert {f["state"] for f in d["files"]} <= {"ok", "unverified"}
            assert d["evidence_state"] in ("ok", "unverified")
            assert Path(d["alert"]["evidence"]["dir"]) == data / "evidence" / aid
            v = c.get(f"/api/alerts/{aid}/verify").json()
            assert v["ok"] is True, v
            # once hashed, the page says so without a click
            assert {f["state"] for f in c.get(f"/api/alerts/{aid}").json()["files"]} == {"ok"}
    finally:
        c.close()
        db.dispose()


def test_export_and_verify_from_another_folder_after_the_move(
    moved: tuple[Path, list[str]], elsewhere: Path
) -> None:
    data, ids = moved
    out = elsewhere / "cases"
    out.mkdir()
    r = _cli("evidence", "export", ids[0], "--data-dir", str(data), "--out", str(out), cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    package = Path(r.stdout.strip())
    assert package.is_file() and "signed with site key sha256:" in r.stderr
    ok = _cli("evidence", "verify", str(package), "--data-dir", str(data), cwd=elsewhere)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: all 8 files match, signed by trusted key sha256:" in ok.stdout
    pub = elsewhere / "site.pub"
    assert (
        _cli("evidence", "pubkey", "--data-dir", str(data), "--out", str(pub), cwd=elsewhere).returncode == 0
    )
    # somewhere with no data directory at all: the exported public key is the trust anchor
    away = elsewhere / "court"
    away.mkdir()
    ok = _cli("evidence", "verify", str(package), "--pubkey", str(pub), cwd=away)
    assert ok.returncode == 0 and "signed by trusted key" in ok.stdout, ok.stdout


def test_alert_page_shows_missing_and_changed_files_without_verify(
    moved: tuple[Path, list[str]], elsewhere: Path, tmp_path: Path
) -> None:
    src, ids = moved
    data = tmp_path / "copy"
    shutil.copytree(src, data)  # damage a copy; the other tests keep theirs
    aid = ids[0]
    folder = data / "evidence" / aid
    clip = next(folder.glob("clip.*"))
    (folder / "snapshot.jpg").unlink()
    raw = bytearray(clip.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # same size: only the hash can tell
    clip.write_bytes(bytes(raw))
    c, db = _client(data)
    try:
        d = c.get(f"/api/alerts/{aid}").json()
        states = {f["name"]: f["state"] for f in d["files"]}
        assert states["snapshot.jpg"] == "missing" and d["evidence_state"] == "missing"
        assert states[clip.name] in ("unverified", "changed")
        assert c.app.state.review.checker.wait_idle(60)  # type: ignore[attr-defined]
        d = c.get(f"/api/alerts/{aid}").json()
        states = {f["name"]: (f["state"], f["checked"]) for f in d["files"]}
        assert states[clip.name] == ("changed", "sha256") and d["clip"]["state"] == "changed"
        assert states["transcript.json"] == ("ok", "sha256")
        # a clip cut short shows at once, from its size
        other = next((data / "evidence" / ids[-1]).glob("clip.*"))
        other.write_bytes(other.read_bytes()[:1000])
        d2 = c.get(f"/api/alerts/{ids[-1]}").json()
        assert {f["name"]: f["state"] for f in d2["files"]}[other.name] == "changed"
        v = c.get(f"/api/alerts/{aid}/verify").json()
        assert {f["name"]: f["status"] for f in v["files"]}["snapshot.jpg"] == "missing"
    finally:
        c.close()
        db.dispose()


# ---------------------------------------------------------------------------------------------------
# Revision 0003 on a store written before it


def _old_store(data: Path) -> str:
    """A SQLite store at revision 0002, as the quick start left it."""
    data.mkdir(parents=True)
    url = f"sqlite:///{data / 'livewatch.db'}"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            from alembic import command

            command.upgrade(alembic_config(conn), "0002")
            conn.commit()
    finally:
        engine.dispose()
    return url


def _insert(db_path: Path, alert_id: str, evidence_dir: str | None, payload: dict) -> None:
    con = sqlite3.connect(db_path)
    with con:
        con.execute(
            "INSERT OR IGNORE INTO broadcasts (id, kind, source, status, rules_version, meta, created_ts) "
            "VALUES ('b1', 'file', 'a.mp4', 'done', 'r1', '{}', 1.0)"
        )
        con.execute(
            "INSERT INTO alerts (id, broadcast_id, category, code, rule_id, severity, source, start_s, end_s, "
            "text, context, law, rules_version, evidence_dir, evidence_status, payload, created_ts) VALUES "
            "(?, 'b1', 'false_claim', 'A1', 'r', 'high', 'speech', 1.0, 2.0, 't', '', '', 'r1', ?, 'done', ?, 2.0)",
            (alert_id, evidence_dir, json.dumps(payload)),
        )
    con.close()


def test_migration_rewrites_old_paths_relative_to_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    scan_cwd = tmp_path / "where-the-scan-ran"
    data = scan_cwd / "livewatch-data"
    _old_store(data)
    for i in ("a-rel", "a-abs"):
        (data / "evidence" / i).mkdir(parents=True)
    outside = tmp_path / "other-disk" / "evidence" / "a-out"
    outside.mkdir(parents=True)
    db_path = data / "livewatch.db"
    _insert(
        db_path,
        "a-rel",
        "livewatch-data/evidence/a-rel",  # relative to the folder the scan ran in
        {
            "alert_id": "a-rel",
            "evidence": {
                "dir": "livewatch-data/evidence/a-rel",
                "manifest": "livewatch-data/evidence/a-rel/manifest.json",
            },
            "details": {
                "contradicts": [{"alert_id": "a-abs", "evidence_dir": str(data / "evidence" / "a-abs")}]
            },
        },
    )
    _insert(
        db_path,
        "a-abs",
        str(data / "evidence" / "a-abs"),
        {"evidence": {"dir": str(data / "evidence" / "a-abs")}},
    )
    _insert(db_path, "a-out", str(outside), {"evidence": {"dir": str(outside)}})
    _insert(db_path, "a-missing", "livewatch-data/evidence/a-missing", {})  # folder gone: cannot tell
    _insert(db_path, "a-pending", None, {})
    # a process that upgrades from another folder (the review app started elsewhere)
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="store.migrations"):
        db = Database.for_data_dir(data)
    with db.session() as s:
        got = {a.id: a.evidence_dir for a in s.scalars(select(AlertRow))}
        rel = s.get(AlertRow, "a-rel")
        assert rel is not None
        payload = rel.payload
    db.dispose()
    assert got == {
        "a-rel": "evidence/a-rel",
        "a-abs": "evidence/a-abs",
        "a-out": str(outside),
        "a-missing": "livewatch-data/evidence/a-missing",
        "a-pending": None,
    }
    assert payload["evidence"] == {"dir": "evidence/a-rel", "manifest": "evidence/a-rel/manifest.json"}
    assert payload["details"]["contradicts"][0]["evidence_dir"] == "evidence/a-abs"
    left = [r.getMessage() for r in caplog.records if "left as it is" in r.getMessage()]
    assert len(left) == 2 and any("a-out" in m for m in left) and any("a-missing" in m for m in left)
    # moved afterwards, the rewritten rows follow the data
    new = tmp_path / "moved"
    shutil.move(str(data), str(new))
    db = Database.for_data_dir(new)
    try:
        with db.session() as s:
            row = s.get(AlertRow, "a-rel")
            assert row is not None and resolve_stored(row.evidence_dir or "", db.data_dir).is_dir()
            assert not s.scalars(select(EvidenceFileRow)).all()
    finally:
        db.dispose()


def test_migration_on_a_quick_start_store_opened_from_the_folder_it_ran_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "livewatch-data"
    _old_store(data)
    (data / "evidence" / "a1").mkdir(parents=True)
    _insert(data / "livewatch.db", "a1", "livewatch-data/evidence/a1", {})
    monkeypatch.chdir(tmp_path)
    db = Database.for_data_dir(Path("livewatch-data"))
    try:
        with db.session() as s:
            assert s.get(AlertRow, "a1").evidence_dir == "evidence/a1"  # type: ignore[union-attr]
    finally:
        db.dispose()
