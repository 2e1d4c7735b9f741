"""Evidence packages built from real evidence folders (real ffmpeg clip and snapshot of the corpus video),
verified, and tampered with one byte at a time."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from alerts.evidence import EvidenceRequest, alert_payload, sha256_file, write_evidence
from alerts.grouping import make_alert
from alerts.package import (
    CAPTURE_MANIFEST,
    MANIFEST,
    PACKAGE_FORMAT,
    EvidenceIntegrityError,
    PackageInput,
    build_package,
    verify_package,
)
from alerts.types import MediaRef
from asr.types import Utterance, Word
from detectors.types import Detection
from ingest.ffmpeg import probe

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict[str, str]]:
    """A real evidence folder for the 顶级 line of broadcast_0.mp4: (folder, alert payload, recorded hashes)."""
    media = ROOT / "examples" / "corpus" / "broadcast_0.mp4"
    info = probe(media)
    ref = MediaRef(str(media), sha256_file(media), media.stat().st_size, 0.0, info.duration_s, info.has_video)
    d = Detection(
        rule_id="false_claim.absolute",
        category="false_claim",
        code="A1",
        severity="high",
        law="广告法 第9条(三)",
        source="speech",
        start_s=13.9,
        end_s=14.4,
        matched="頂級",
        text="這款手機可頂級裁製全世界獨一五二",
    )
    alert = make_alert(
        [d], broadcast_id="b0", rules_version="v-test", context=d.text, started_ts=1714528800.0
    )
    words = tuple(Word(ch, 12.6 + i * 0.19, 12.6 + (i + 1) * 0.19) for i, ch in enumerate(d.text))
    utt = Utterance(0, 12.6, 15.7, d.text, words)
    payload = alert_payload(alert, stream_id="room-a", media_path=str(media))
    ev = write_evidence(
        EvidenceRequest(
            alert=alert,
            media=ref,
            originals=(ref,),
            utterances=(utt,),
            out_root=tmp_path_factory.mktemp("ev"),
            pre_roll_s=10.0,
            post_roll_s=5.0,
            snapshot=True,
            tool_version="test",
            stream={"stream_id": "room-a", "started_ts": 1714528800.0, "source": str(media)},
            payload=payload,
        )
    )
    recorded = {f.name: f.sha256 for f in ev.files} | {"manifest.json": ev.manifest_sha256}
    return Path(ev.dir), payload, recorded


DECISIONS = [
    {
        "id": 1,
        "alert_id": "x",
        "decision": "false_positive",
        "note": "",
        "reviewer": "ann",
        "created_ts": 1714529000.0,
    },
    {
        "id": 2,
        "alert_id": "x",
        "decision": "confirmed",
        "note": "听清楚了: 顶级材质",
        "reviewer": "bo",
        "created_ts": 1714529100.0,
    },
]


def _build(evidence: tuple[Path, dict, dict[str, str]], dest: Path) -> Path:
    folder, payload, recorded = evidence
    inp = PackageInput(
        alert=payload,
        evidence_dir=folder,
        recorded_sha256=recorded,
        decisions=DECISIONS,
        exported_by="ann",
        tool_version="test",
        created_ts=1714530000.0,
    )
    return build_package(inp, dest).path


@pytest.fixture()
def package(evidence: tuple[Path, dict, dict[str, str]], tmp_path: Path) -> Path:
    return _build(evidence, tmp_path / "pkg.zip")


def test_package_holds_the_evidence_untouched_with_hashes_decisions_and_summary(
    evidence: tuple[Path, dict, dict[str, str]], package: Path
) -> None:
    folder, payload, recorded = evidence
    report = verify_package(package)
    assert report.ok, (report.checks, report.problems)
    with zipfile.ZipFile(package) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read(MANIFEST))
        # the capture folder is carried byte for byte
        for name in ("clip.mp4", "snapshot.jpg", "transcript.json", "manifest.json"):
            assert hashlib.sha256(zf.read(f"evidence/{name}")).hexdigest() == sha256_file(folder / name)
        assert hashlib.sha256(zf.read(CAPTURE_MANIFEST)).hexdigest() == recorded["manifest.json"]
        assert {f["name"] for f in manifest["files"]} == names - {MANIFEST}
        for f in manifest["files"]:
            assert hashlib.sha256(zf.read(f["name"])).hexdigest() == f["sha256"]
            assert len(zf.read(f["name"])) == f["size"]
        # SHA256SUMS is what `sha256sum -c` reads
        sums = dict(line.split("  ", 1)[::-1] for line in zf.read("SHA256SUMS").decode().splitlines())
        assert set(sums) == names - {MANIFEST, "SHA256SUMS"}
        assert json.loads(zf.read("decisions.json"))[1]["note"] == "听清楚了: 顶级材质"
        assert json.loads(zf.read("alert.json"))["alert_id"] == payload["alert_id"]
        summary = zf.read("summary.html").decode("utf-8")
    assert manifest["format"] == PACKAGE_FORMAT and manifest["alert_id"] == payload["alert_id"]
    assert manifest["capture_manifest_sha256"] == recorded["manifest.json"]
    assert payload["alert_id"] in summary and "广告法 第9条(三)" in summary
    assert "听清楚了: 顶级材质" in summary and 'src="evidence/snapshot.jpg"' in summary
    assert recorded["clip.mp4"] in summary
    assert "<script" not in summary.lower()


def test_sha256sum_accepts_the_package(package: Path, tmp_path: Path) -> None:
    sha256sum = shutil.which("sha256sum")
    if sha256sum is None:
        pytest.skip("sha256sum (coreutils) not installed")
    out = tmp_path / "x"
    with zipfile.ZipFile(package) as zf:
        zf.extractall(out)
    r = subprocess.run([sha256sum, "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _rewrite(
    package: Path, dest: Path, change: dict[str, bytes | None], add: dict[str, bytes] | None = None
) -> Path:
    """Copy a package, replacing (or, for None, dropping) members, as someone editing the zip would."""
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(dest, "w") as out:
        for info in src.infolist():
            if info.filename in change:
                if change[info.filename] is not None:
                    out.writestr(info, change[info.filename])  # type: ignore[arg-type]
            else:
                out.writestr(info, src.read(info.filename))
        for name, data in (add or {}).items():
            out.writestr(name, data)
    return dest


def _one_byte(data: bytes, at: int | None = None) -> bytes:
    i = len(data) // 2 if at is None else at
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


@pytest.mark.parametrize(
    "member",
    [
        "evidence/clip.mp4",
        "evidence/snapshot.jpg",
        "evidence/transcript.json",
        "evidence/manifest.json",
        "alert.json",
        "decisions.json",
        "summary.html",
        "SHA256SUMS",
    ],
)
def test_verify_names_the_member_whose_content_changed_by_one_byte(
    package: Path, tmp_path: Path, member: str
) -> None:
    with zipfile.ZipFile(package) as zf:
        data = zf.read(member)
    bad = _rewrite(package, tmp_path / "bad.zip", {member: _one_byte(data)})
    report = verify_package(bad)
    assert not report.ok
    assert report.bad_files == [member]
    check = next(c for c in report.checks if c.name == member)
    assert check.status == "changed" and check.actual_sha256 == hashlib.sha256(_one_byte(data)).hexdigest()


def _member_data_offset(path: Path, member: str) -> tuple[int, int]:
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    raw = path.read_bytes()
    # local file header: 30 fixed bytes, then the name and the extra field
    name_len = int.from_bytes(raw[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[info.header_offset + 28 : info.header_offset + 30], "little")
    return info.header_offset + 30 + name_len + extra_len, info.compress_size


@pytest.mark.parametrize(
    "member",
    [
        "evidence/clip.mp4",
        "evidence/snapshot.jpg",
        "evidence/transcript.json",
        "evidence/manifest.json",
        "alert.json",
        "decisions.json",
        "summary.html",
        "SHA256SUMS",
        MANIFEST,
    ],
)
def test_verify_names_the_member_after_one_byte_of_the_zip_file_is_flipped(
    package: Path, tmp_path: Path, member: str
) -> None:
    offset, size = _member_data_offset(package, member)
    raw = package.read_bytes()
    bad = tmp_path / "flipped.zip"
    bad.write_bytes(_one_byte(raw, offset + size // 2))
    report = verify_package(bad)
    assert not report.ok
    assert report.named_files == [member]


def test_verify_via_the_cli_passes_then_names_the_changed_file(package: Path, tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "app.cli", "evidence", "verify", str(package)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: all 8 files match" in ok.stdout
    with zipfile.ZipFile(package) as zf:
        clip = zf.read("evidence/clip.mp4")
    bad = _rewrite(package, tmp_path / "bad.zip", {"evidence/clip.mp4": _one_byte(clip)})
    r = subprocess.run(
        [sys.executable, "-m", "app.cli", "evidence", "verify", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert "CHANGED    evidence/clip.mp4" in r.stdout
    assert "FAILED: evidence/clip.mp4 changed or damaged" in r.stdout
    assert sum(line.startswith("OK ") for line in r.stdout.splitlines()) == 7


def test_forged_manifest_is_caught_by_the_capture_manifest_and_the_case_file_hash(
    package: Path, tmp_path: Path
) -> None:
    """Someone swaps the clip and rewrites the package manifest and SHA256SUMS to match."""
    with zipfile.ZipFile(package) as zf:
        manifest = json.loads(zf.read(MANIFEST))
        clip = _one_byte(zf.read("evidence/clip.mp4"))
        sums = zf.read("SHA256SUMS").decode()
    original_manifest_sha = verify_package(package).manifest_sha256
    new_sha = hashlib.sha256(clip).hexdigest()
    old_sha = next(f["sha256"] for f in manifest["files"] if f["name"] == "evidence/clip.mp4")
    sums = sums.replace(old_sha, new_sha).encode()
    for f in manifest["files"]:
        if f["name"] == "evidence/clip.mp4":
            f["sha256"] = new_sha
        if f["name"] == "SHA256SUMS":
            f["sha256"], f["size"] = hashlib.sha256(sums).hexdigest(), len(sums)
    forged = _rewrite(
        package,
        tmp_path / "forged.zip",
        {"evidence/clip.mp4": clip, "SHA256SUMS": sums, MANIFEST: json.dumps(manifest).encode()},
    )
    report = verify_package(forged)
    assert report.bad_files == []  # consistent with its own (forged) manifest...
    assert not report.ok and report.named_files == [
        "evidence/clip.mp4"
    ]  # ...but not with the capture manifest
    report = verify_package(forged, expected_manifest_sha256=original_manifest_sha)
    assert set(report.named_files) == {"evidence/clip.mp4", MANIFEST}


def test_missing_and_unlisted_members_are_named(package: Path, tmp_path: Path) -> None:
    bad = _rewrite(package, tmp_path / "bad.zip", {"evidence/snapshot.jpg": None}, add={"extra.txt": b"hi"})
    report = verify_package(bad)
    status = {c.name: c.status for c in report.checks if c.status != "ok"}
    assert status == {"evidence/snapshot.jpg": "missing", "extra.txt": "unlisted"}
    not_zip = tmp_path / "not.zip"
    not_zip.write_bytes(b"PK\x03\x04 but not really a zip")
    report = verify_package(not_zip)
    assert not report.ok and report.problems and str(not_zip) in report.problems[0]


def test_export_refuses_evidence_changed_on_disk(
    evidence: tuple[Path, dict, dict[str, str]], tmp_path: Path
) -> None:
    folder, payload, recorded = evidence
    copy = tmp_path / "ev"
    shutil.copytree(folder, copy)
    (copy / "clip.mp4").write_bytes(_one_byte((copy / "clip.mp4").read_bytes()))
    inp = PackageInput(
        alert=payload,
        evidence_dir=copy,
        recorded_sha256=recorded,
        decisions=[],
        exported_by="ann",
        tool_version="test",
    )
    with pytest.raises(EvidenceIntegrityError, match=r"clip\.mp4"):
        build_package(inp, tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()
    assert not list(tmp_path.glob(".out.zip.*"))
