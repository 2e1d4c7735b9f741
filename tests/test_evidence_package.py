"""Evidence packages built from real evidence folders (real ffmpeg clip and snapshot of the corpus video),
verified, tampered with one byte at a time, and forged (re-hashed, unsigned, re-signed by another key)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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
from alerts.signing import SiteKey, load_or_create_site_key
from alerts.types import MediaRef
from asr.types import Utterance, Word
from detectors.types import Detection
from ingest.ffmpeg import probe

ROOT = Path(__file__).resolve().parents[1]
SITE = SiteKey(Ed25519PrivateKey.generate())
TRUSTED = [SITE.public_raw]


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
        signing_key=SITE,
    )
    return build_package(inp, dest).path


@pytest.fixture()
def package(evidence: tuple[Path, dict, dict[str, str]], tmp_path: Path) -> Path:
    return _build(evidence, tmp_path / "pkg.zip")


def test_package_holds_the_evidence_untouched_with_hashes_decisions_and_summary(
    evidence: tuple[Path, dict, dict[str, str]], package: Path
) -> None:
    folder, payload, recorded = evidence
    report = verify_package(package, trusted_keys=TRUSTED)
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
    report = verify_package(bad, trusted_keys=TRUSTED)
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
    report = verify_package(bad, trusted_keys=TRUSTED)
    assert not report.ok
    assert report.named_files == [member]


def _verify_cli(package: Path, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "evidence", "verify", str(package), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "LIVEWATCH_DATA_DIR": str(cwd / "no-data-here")},
    )


@pytest.fixture()
def site_pub(tmp_path: Path) -> Path:
    path = tmp_path / "site.pub"
    path.write_bytes(SITE.public_pem())
    return path


def test_verify_via_the_cli_passes_then_names_the_changed_file(
    package: Path, tmp_path: Path, site_pub: Path
) -> None:
    ok = _verify_cli(package, "--pubkey", str(site_pub))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"OK: all 8 files match, signed by trusted key {SITE.fingerprint}" in ok.stdout
    with zipfile.ZipFile(package) as zf:
        clip = zf.read("evidence/clip.mp4")
    bad = _rewrite(package, tmp_path / "bad.zip", {"evidence/clip.mp4": _one_byte(clip)})
    r = _verify_cli(bad, "--pubkey", str(site_pub))
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
    original_manifest_sha = verify_package(package, trusted_keys=TRUSTED).manifest_sha256
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
    report = verify_package(forged, trusted_keys=TRUSTED)
    assert report.bad_files == []  # consistent with its own (forged) manifest...
    # ...but not with the capture manifest, nor with the signature over the original manifest
    assert not report.ok and set(report.named_files) == {"evidence/clip.mp4", MANIFEST}
    assert report.signature is not None and report.signature.status == "invalid"
    report = verify_package(forged, expected_manifest_sha256=original_manifest_sha, trusted_keys=TRUSTED)
    assert set(report.named_files) == {"evidence/clip.mp4", MANIFEST}


def test_missing_and_unlisted_members_are_named(package: Path, tmp_path: Path) -> None:
    bad = _rewrite(package, tmp_path / "bad.zip", {"evidence/snapshot.jpg": None}, add={"extra.txt": b"hi"})
    report = verify_package(bad, trusted_keys=TRUSTED)
    status = {c.name: c.status for c in report.checks if c.status != "ok"}
    assert status == {"evidence/snapshot.jpg": "missing", "extra.txt": "unlisted"}
    not_zip = tmp_path / "not.zip"
    not_zip.write_bytes(b"PK\x03\x04 but not really a zip")
    report = verify_package(not_zip, trusted_keys=TRUSTED)
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


def _forge(package: Path, dest: Path, *, sign_with: SiteKey | None, keep_signature: bool = False) -> Path:
    """Swap the clip and re-hash everything a forger can: the capture manifest, SHA256SUMS and the package
    manifest; then keep the old signature, drop it, or sign with `sign_with`."""
    with zipfile.ZipFile(package) as zf:
        manifest = json.loads(zf.read(MANIFEST))
        capture = json.loads(zf.read(CAPTURE_MANIFEST))
        clip = _one_byte(zf.read("evidence/clip.mp4"))
        members = {n: zf.read(n) for n in zf.namelist()}
    sha = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    for f in capture["files"]:
        if f["name"] == "clip.mp4":
            f["sha256"] = sha(clip)
    capture_raw = json.dumps(capture, ensure_ascii=False, indent=1).encode()
    new = {"evidence/clip.mp4": clip, CAPTURE_MANIFEST: capture_raw}
    sums = "".join(
        f"{sha(new.get(f['name'], members[f['name']]))}  {f['name']}\n"
        for f in manifest["files"]
        if f["name"] != "SHA256SUMS"
    ).encode()
    new["SHA256SUMS"] = sums
    for f in manifest["files"]:
        if f["name"] in new:
            f["sha256"], f["size"] = sha(new[f["name"]]), len(new[f["name"]])
    manifest["capture_manifest_sha256"] = manifest["capture_manifest_sha256_recorded"] = sha(capture_raw)
    if not keep_signature:
        manifest.pop("signature", None)
        if sign_with is not None:
            from alerts.signing import sign_manifest

            manifest = sign_manifest(manifest, sign_with)
    new[MANIFEST] = json.dumps(manifest, ensure_ascii=False, indent=1).encode()
    return _rewrite(package, dest, new)  # type: ignore[arg-type]


def test_fully_rehashed_forgery_fails_on_its_signature(package: Path, tmp_path: Path, site_pub: Path) -> None:
    forged = _forge(package, tmp_path / "forged.zip", sign_with=None, keep_signature=True)
    report = verify_package(forged, trusted_keys=TRUSTED)
    assert report.bad_files == [] and report.signature is not None
    assert report.signature.status == "invalid" and not report.ok
    # the re-hashed capture manifest no longer matches its own (capture-time) signature either
    assert report.named_files == [MANIFEST, CAPTURE_MANIFEST]
    assert report.capture_signature is not None and report.capture_signature.status == "invalid"
    r = _verify_cli(forged, "--pubkey", str(site_pub))
    assert r.returncode == 1 and "OK:" not in r.stdout
    assert "NOT VERIFIED: signature invalid" in r.stdout and "changed after it was signed" in r.stdout


def test_unsigned_and_resigned_forgeries_are_named_as_such(
    package: Path, tmp_path: Path, site_pub: Path
) -> None:
    unsigned = _forge(package, tmp_path / "unsigned.zip", sign_with=None)
    report = verify_package(unsigned, trusted_keys=TRUSTED)
    assert report.bad_files == [] and report.signature is not None and report.signature.status == "unsigned"
    assert not report.ok
    r = _verify_cli(unsigned, "--pubkey", str(site_pub))
    assert r.returncode == 1 and "NOT VERIFIED: unsigned" in r.stdout and "OK:" not in r.stdout

    forger = SiteKey(Ed25519PrivateKey.generate())
    resigned = _forge(package, tmp_path / "resigned.zip", sign_with=forger)
    report = verify_package(resigned, trusted_keys=TRUSTED)
    assert report.bad_files == [] and report.signature is not None
    assert (report.signature.status, report.signature.trusted) == ("valid", False)
    assert report.signature.key_fingerprint == forger.fingerprint and not report.ok
    r = _verify_cli(resigned, "--pubkey", str(site_pub))
    assert r.returncode == 1 and "OK:" not in r.stdout
    assert f"signed by {forger.fingerprint}, NOT the trusted key {SITE.fingerprint}" in r.stdout
    assert "NOT VERIFIED" in r.stdout and "not a trusted key" in r.stdout
    # with no key to check against, a valid signature alone is not enough
    r = _verify_cli(resigned)
    assert r.returncode == 1 and "OK:" not in r.stdout
    assert "NOT VERIFIED" in r.stdout and "not checked against a trusted key" in r.stdout
    assert forger.fingerprint in r.stdout
    # the genuine package without a key, but with the manifest hash from the case file, verifies
    genuine_sha = verify_package(package, trusted_keys=TRUSTED).manifest_sha256 or ""
    r = _verify_cli(package, "--manifest-sha256", genuine_sha)
    assert r.returncode == 0 and "manifest matches the case file" in r.stdout, r.stdout


def test_site_key_is_made_once_private_and_exported(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = load_or_create_site_key(data)
    path = data / "site-signing-key.pem"
    assert path.is_file() and (path.stat().st_mode & 0o777) == 0o600
    assert load_or_create_site_key(data).fingerprint == key.fingerprint
    assert not [p for p in data.iterdir() if p.name != path.name]  # no temporary left behind
    r = subprocess.run(
        [sys.executable, "-m", "app.cli", "evidence", "pubkey", "--data-dir", str(data)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("-----BEGIN PUBLIC KEY-----") and key.fingerprint in r.stderr
    assert "PRIVATE" not in r.stdout
