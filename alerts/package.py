"""Evidence packages: one zip per alert that a case file can carry, and its verification.

A package holds the alert's evidence folder exactly as it was captured (`evidence/`: clip, snapshot,
transcript, capture-time manifest), the alert object (`alert.json`), the reviewers' decision history
(`decisions.json`), a printable summary page (`summary.html`), a `SHA256SUMS` file that `sha256sum -c`
understands, and `manifest.json` listing the SHA-256 and size of every other member.

Three layers of hashes let `verify_package` say *which* file changed, and a signature says who made it:
- the package manifest lists every member's hash (changing any member shows up here);
- `evidence/manifest.json`, written when the evidence was captured, lists the capture-time hashes of
  the clip, snapshot and transcript (editing a member and the package manifest together still shows);
- the package manifest records the capture manifest's SHA-256 as the database held it at export, and
  `verify_package` accepts the package manifest's own SHA-256 from a case file (`expected_manifest_sha256`);
- the package manifest is signed with the site's Ed25519 key (alerts.signing): someone who changes a file
  and re-hashes both manifests cannot sign for the site. `verify_package` reports the signer's key and
  whether it is one the verifier trusts; a package is OK only when its signer is trusted (or, with no
  key to check against, when its manifest matches the case file's hash).

Pure functions over files: no database, no web. `build_package` refuses to export an evidence folder
whose files no longer match the hashes recorded at capture. Both functions are safe to call from any
thread; each works on its own files.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import logging
import os
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo

from alerts.signing import SignatureCheck, SiteKey, check_signature, sign_manifest

__all__ = [
    "PACKAGE_FORMAT",
    "EvidenceIntegrityError",
    "FileCheck",
    "PackageInput",
    "PackageResult",
    "SignatureCheck",
    "VerifyReport",
    "build_package",
    "render_summary_html",
    "verify_package",
]

logger = logging.getLogger(__name__)

PACKAGE_FORMAT = "livewatch-evidence-package/1"
MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
EVIDENCE_PREFIX = "evidence/"
CAPTURE_MANIFEST = EVIDENCE_PREFIX + "manifest.json"

# Media is already compressed; deflating it only costs time and makes a byte flip harder to localise.
_STORED_SUFFIXES = {
    ".mp4",
    ".m4a",
    ".mkv",
    ".ts",
    ".flv",
    ".webm",
    ".jpg",
    ".jpeg",
    ".png",
    ".flac",
    ".mp3",
    ".aac",
    ".ogg",
    ".opus",
}


class EvidenceIntegrityError(Exception):
    """The evidence folder on disk no longer matches the hashes recorded when it was captured."""


@dataclass(frozen=True, slots=True)
class PackageInput:
    """Everything a package is made of. `recorded_sha256` maps evidence file names to the hashes the
    database recorded at capture (`manifest.json` included); `decisions` are plain dicts in time order."""

    alert: Mapping[str, Any]
    evidence_dir: Path
    recorded_sha256: Mapping[str, str]
    decisions: Sequence[Mapping[str, Any]]
    exported_by: str
    tool_version: str
    timezone: str = "Asia/Shanghai"
    created_ts: float | None = None
    signing_key: SiteKey | None = None  # the site key; None makes an unsigned package (verify fails it)


@dataclass(frozen=True, slots=True)
class PackageResult:
    path: Path
    zip_sha256: str
    manifest_sha256: str
    files: tuple[tuple[str, str, int], ...]  # (member name, sha256, size), manifest excluded


@dataclass(frozen=True, slots=True)
class FileCheck:
    name: str
    status: str  # ok | changed | missing | unlisted | unreadable
    expected_sha256: str | None = None
    actual_sha256: str | None = None
    detail: str = ""


@dataclass(slots=True)
class VerifyReport:
    path: Path
    checks: list[FileCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # package-level findings, each naming a file
    manifest_sha256: str | None = None
    alert_id: str | None = None
    signature: SignatureCheck | None = None
    signature_problem: str | None = (
        None  # the finding (also in `problems`) when the signer is not vouched for
    )
    manifest_matches_case_file: bool = False  # expected_manifest_sha256 given and equal
    # the capture manifest's own signature (made when the evidence was written); "unsigned" for
    # evidence captured before manifests were signed, which is reported but is no failure
    capture_signature: SignatureCheck | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.status == "ok" for c in self.checks)

    @property
    def bad_files(self) -> list[str]:
        return [c.name for c in self.checks if c.status != "ok"]

    @property
    def named_files(self) -> list[str]:
        """Every file a finding names: bad members first, then those named by package-level problems."""
        return list(dict.fromkeys([*self.bad_files, *(p.split(":", 1)[0] for p in self.problems)]))


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_path(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _kind_of(name: str) -> str:
    if name == CAPTURE_MANIFEST:
        return "capture_manifest"
    if name.startswith(EVIDENCE_PREFIX):
        stem = PurePosixPath(name).stem
        return {"clip": "clip", "snapshot": "snapshot", "transcript": "transcript"}.get(stem, "evidence")
    return {
        "alert.json": "alert",
        "decisions.json": "decisions",
        "summary.html": "summary",
        SUMS: "checksums",
    }.get(name, "other")


def build_package(inp: PackageInput, dest: Path) -> PackageResult:
    """Write the package zip to `dest` (a file path) atomically; return its hashes.

    Raises EvidenceIntegrityError, naming the file, when an evidence file is missing or its hash differs
    from the one recorded at capture.
    """
    folder = Path(inp.evidence_dir)
    capture_path = folder / "manifest.json"
    if not capture_path.is_file():
        raise EvidenceIntegrityError(f"{capture_path}: capture manifest is missing")
    capture_raw = capture_path.read_bytes()
    capture = json.loads(capture_raw.decode("utf-8"))
    recorded = dict(inp.recorded_sha256)
    capture_sha = _sha256_bytes(capture_raw)
    if recorded.get("manifest.json") and recorded["manifest.json"] != capture_sha:
        raise EvidenceIntegrityError(
            f"{capture_path}: SHA-256 {capture_sha} differs from the {recorded['manifest.json']} recorded at capture"
        )
    members: list[tuple[str, bytes | Path]] = []
    for f in capture.get("files", []):
        name = str(f["name"])
        if "/" in name or "\\" in name or name in ("", ".", ".."):
            raise EvidenceIntegrityError(f"{capture_path}: file name {name!r} is not a plain name")
        path = folder / name
        if not path.is_file():
            raise EvidenceIntegrityError(f"{path}: evidence file is missing")
        actual = _sha256_path(path)
        for source, want in (("capture manifest", f.get("sha256")), ("database", recorded.get(name))):
            if want and want != actual:
                raise EvidenceIntegrityError(f"{path}: SHA-256 {actual} differs from the {source}'s {want}")
        members.append((EVIDENCE_PREFIX + name, path))
    members.append((CAPTURE_MANIFEST, capture_raw))

    created_ts = inp.created_ts if inp.created_ts is not None else time.time()
    transcript = _load_json_member(folder / "transcript.json")
    members.append(("alert.json", _json_bytes(dict(inp.alert))))
    members.append(("decisions.json", _json_bytes(list(map(dict, inp.decisions)))))
    summary = render_summary_html(
        alert=inp.alert,
        capture=capture,
        transcript=transcript,
        decisions=inp.decisions,
        files=[(n, _sha256_of(v), _size_of(v)) for n, v in members],
        created_ts=created_ts,
        exported_by=inp.exported_by,
        timezone=inp.timezone,
        signer=inp.signing_key.fingerprint if inp.signing_key is not None else None,
    )
    members.append(("summary.html", summary.encode("utf-8")))
    listed = [(n, _sha256_of(v), _size_of(v)) for n, v in members]
    sums = "".join(f"{sha}  {name}\n" for name, sha, _ in listed).encode("utf-8")
    members.append((SUMS, sums))
    listed.append((SUMS, _sha256_bytes(sums), len(sums)))

    manifest = {
        "format": PACKAGE_FORMAT,
        "alert_id": inp.alert.get("alert_id"),
        "created_ts": created_ts,
        "created_at": datetime.fromtimestamp(created_ts, UTC).isoformat(),
        "exported_by": inp.exported_by,
        "tool": {"name": "livewatch", "version": inp.tool_version},
        "capture_manifest_sha256": capture_sha,
        "capture_manifest_sha256_recorded": recorded.get("manifest.json"),
        "rule_id": capture.get("rule_id"),
        "rules_version": capture.get("rules_version"),
        "media": capture.get("media", []),
        "files": [{"name": n, "kind": _kind_of(n), "sha256": s, "size": z} for n, s, z in listed],
    }
    if inp.signing_key is not None:
        manifest = sign_manifest(manifest, inp.signing_key)
    manifest_raw = _json_bytes(manifest)
    members.append((MANIFEST, manifest_raw))

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with zipfile.ZipFile(tmp, "w") as zf:
            for name, value in members:
                stored = PurePosixPath(name).suffix.lower() in _STORED_SUFFIXES
                info = zipfile.ZipInfo(name, date_time=_zip_time(created_ts))
                info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                if isinstance(value, Path):
                    with open(value, "rb") as src, zf.open(info, "w") as out:
                        while block := src.read(1 << 20):
                            out.write(block)
                else:
                    zf.writestr(info, value)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return PackageResult(dest, _sha256_path(dest), _sha256_bytes(manifest_raw), tuple(listed))


def verify_package(
    path: Path, expected_manifest_sha256: str | None = None, *, trusted_keys: Iterable[bytes] | None = None
) -> VerifyReport:
    """Check every member of a package against its manifest and the capture-time manifest, and the
    manifest's signature against `trusted_keys` (raw Ed25519 public keys; None = no key to check with).

    Never raises for a damaged package: every finding lands in the report, naming the file.
    """
    report = VerifyReport(Path(path))
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        report.problems.append(f"{path}: not a readable zip ({e})")
        return report
    with zf:
        names = [i.filename for i in zf.infolist()]
        if MANIFEST not in names:
            report.problems.append(f"{MANIFEST}: missing; nothing to check the files against")
            return report
        raw, err = _read_member(zf, MANIFEST)
        if raw is None:
            report.problems.append(f"{MANIFEST}: unreadable ({err})")
            return report
        report.manifest_sha256 = _sha256_bytes(raw)
        try:
            manifest = json.loads(raw.decode("utf-8"))
            listed = {str(f["name"]): f for f in manifest["files"]}
        except (ValueError, KeyError, TypeError) as e:
            report.problems.append(f"{MANIFEST}: not a package manifest ({e})")
            return report
        report.alert_id = manifest.get("alert_id")
        if manifest.get("format") != PACKAGE_FORMAT:
            report.problems.append(f"{MANIFEST}: unknown format {manifest.get('format')!r}")
        if expected_manifest_sha256 and expected_manifest_sha256.lower() != report.manifest_sha256:
            report.problems.append(
                f"{MANIFEST}: SHA-256 {report.manifest_sha256} differs from the expected {expected_manifest_sha256}"
            )
        report.manifest_matches_case_file = bool(
            expected_manifest_sha256 and expected_manifest_sha256.lower() == report.manifest_sha256
        )
        _check_signature(manifest, trusted_keys, report)
        contents: dict[str, bytes] = {}
        for name, entry in listed.items():
            if name not in names:
                report.checks.append(
                    FileCheck(name, "missing", entry.get("sha256"), None, "listed but not in the zip")
                )
                continue
            data, err = _read_member(zf, name)
            if data is None:
                status = "changed" if "CRC" in err else "unreadable"
                report.checks.append(FileCheck(name, status, entry.get("sha256"), None, err))
                continue
            actual = _sha256_bytes(data)
            if actual != entry.get("sha256"):
                detail = (
                    f"size {len(data)} (listed {entry.get('size')})" if len(data) != entry.get("size") else ""
                )
                report.checks.append(FileCheck(name, "changed", entry.get("sha256"), actual, detail))
            else:
                report.checks.append(FileCheck(name, "ok", actual, actual))
                contents[name] = data
        for name in names:
            if name != MANIFEST and name not in listed:
                report.checks.append(
                    FileCheck(name, "unlisted", None, None, "in the zip but not in the manifest")
                )
        _cross_check_capture(manifest, contents, report)
    return report


def _check_signature(
    manifest: Mapping[str, Any], trusted_keys: Iterable[bytes] | None, report: VerifyReport
) -> None:
    sig = report.signature = check_signature(manifest, None if trusted_keys is None else list(trusted_keys))
    anchored = report.manifest_matches_case_file
    problem = None
    if sig.status == "invalid":
        who = f" (key {sig.key_fingerprint})" if sig.key_fingerprint else ""
        problem = f"signature invalid{who}: {sig.detail}"
    elif sig.status == "unsigned" and not anchored:
        problem = (
            "unsigned: nothing binds this package to the site that made it (its hashes only agree with "
            "each other)"
        )
    elif sig.status == "valid" and sig.trusted is False:
        problem = (
            f"signed by key {sig.key_fingerprint}, which is not a trusted key: re-signed by someone else, "
            "or exported by another site"
        )
    elif sig.status == "valid" and sig.trusted is None and not anchored:
        problem = (
            f"signed by key {sig.key_fingerprint}, which was not checked against a trusted key (give the "
            "site's public key: `livewatch evidence pubkey` there, then --pubkey FILE)"
        )
    if problem is not None:
        report.signature_problem = f"{MANIFEST}: {problem}"
        report.problems.append(report.signature_problem)


def _cross_check_capture(
    manifest: Mapping[str, Any], contents: Mapping[str, bytes], report: VerifyReport
) -> None:
    """Compare evidence files with the capture-time manifest, which the package manifest alone cannot vouch for."""
    capture_raw = contents.get(CAPTURE_MANIFEST)
    if capture_raw is None:
        return
    capture_sha = _sha256_bytes(capture_raw)
    for key in ("capture_manifest_sha256", "capture_manifest_sha256_recorded"):
        want = manifest.get(key)
        if want and want != capture_sha:
            report.problems.append(f"{CAPTURE_MANIFEST}: SHA-256 {capture_sha} differs from {key} {want}")
    try:
        capture = json.loads(capture_raw.decode("utf-8"))
        files = list(capture.get("files", []))
    except (ValueError, AttributeError) as e:
        report.problems.append(f"{CAPTURE_MANIFEST}: unreadable ({e})")
        return
    if isinstance(capture, dict):
        trusted = None
        sig = report.signature
        if sig is not None and sig.status == "valid" and sig.trusted:
            trusted = [base64.b64decode(manifest["signature"]["public_key"])]
        csig = report.capture_signature = check_signature(capture, trusted)
        if csig.status == "invalid":
            report.problems.append(f"{CAPTURE_MANIFEST}: signature invalid: {csig.detail}")
    for f in files:
        name = EVIDENCE_PREFIX + str(f.get("name"))
        data = contents.get(name)
        if data is not None and _sha256_bytes(data) != f.get("sha256"):
            report.problems.append(
                f"{name}: SHA-256 differs from the capture-time manifest ({f.get('sha256')})"
            )


def _read_member(zf: zipfile.ZipFile, name: str) -> tuple[bytes | None, str]:
    try:
        return zf.read(name), ""
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError) as e:
        # zipfile checks each member's CRC-32 and local header as it reads: damage inside the zip is caught
        # here, and named by the member being read.
        return None, str(e)


def _load_json_member(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=False).encode("utf-8")


def _sha256_of(value: bytes | Path) -> str:
    return _sha256_path(value) if isinstance(value, Path) else _sha256_bytes(value)


def _size_of(value: bytes | Path) -> int:
    return value.stat().st_size if isinstance(value, Path) else len(value)


def _zip_time(ts: float) -> tuple[int, int, int, int, int, int]:
    dt = datetime.fromtimestamp(max(ts, 315532800.0), UTC)  # zip dates start in 1980
    return (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second)


def _fmt_ts(ts: float | None, tz: ZoneInfo) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(float(ts), tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "—"
    s = float(s)
    return f"{int(s // 3600):02d}:{int(s % 3600 // 60):02d}:{s % 60:06.3f}"


def render_summary_html(
    *,
    alert: Mapping[str, Any],
    capture: Mapping[str, Any],
    transcript: Mapping[str, Any],
    decisions: Sequence[Mapping[str, Any]],
    files: Sequence[tuple[str, str, int]],
    created_ts: float,
    exported_by: str,
    timezone: str,
    signer: str | None = None,
) -> str:
    """A self-contained printable page (no scripts, no external resources except the packaged snapshot)."""
    tz = ZoneInfo(timezone)
    e = html.escape
    out = io.StringIO()
    aid = str(alert.get("alert_id", ""))
    clip = capture.get("clip", {}) or {}
    rows = [
        ("告警编号 Alert", aid),
        ("直播间 Stream", alert.get("stream_id") or "—"),
        ("场次 Broadcast", alert.get("broadcast_id")),
        ("来源文件 / 地址 Source", (capture.get("stream") or {}).get("source") or alert.get("media") or "—"),
        ("时间 Wall clock", _fmt_ts(alert.get("start_ts"), tz)),
        ("时间点 Moment in broadcast", f"{_fmt_s(alert.get('start_s'))} – {_fmt_s(alert.get('end_s'))}"),
        ("类别 Category", f"{alert.get('category')} · {alert.get('code')}"),
        ("规则 Rule", alert.get("rule")),
        ("规则版本 Rules version", alert.get("rules_version")),
        ("严重程度 Severity", alert.get("severity")),
        ("信号 Source", alert.get("source")),
        ("命中 Matched", alert.get("matched")),
        ("原文 Text", alert.get("text")),
        ("上下文 Context", alert.get("context")),
        ("法律依据 Law", alert.get("law")),
        (
            "片段 Clip",
            f"{_fmt_s(clip.get('start_s'))} – {_fmt_s(clip.get('end_s'))} "
            f"({clip.get('method', '')}; moment at +{clip.get('moment_offset_s', '—')} s)",
        ),
    ]
    out.write('<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">')
    out.write(f"<title>证据包 Evidence package {e(aid)}</title><style>{_SUMMARY_CSS}</style></head><body>")
    out.write(
        f'<h1>证据包 Evidence package</h1><p class="sub">{e(aid)} · exported {e(_fmt_ts(created_ts, tz))}'
        f" by {e(exported_by)}</p>"
    )
    if signer:
        out.write(f'<p class="sub">签名 Signed with site key <span class="mono">{e(signer)}</span></p>')
    out.write('<table class="kv">')
    for k, v in rows:
        out.write(f"<tr><th>{e(k)}</th><td>{e(str(v if v is not None else '—'))}</td></tr>")
    out.write("</table>")
    if any(name == EVIDENCE_PREFIX + "snapshot.jpg" for name, _, _ in files):
        out.write('<h2>截图 Snapshot</h2><img class="snap" src="evidence/snapshot.jpg" alt="snapshot">')
    contradicts = (alert.get("details") or {}).get("contradicts") or []
    if contradicts:
        out.write(
            "<h2>历史价格 Earlier price claims</h2><table><tr><th>时间 Time</th><th>场次 Broadcast</th>"
            "<th>位置 Position</th><th>原话 Claim</th><th>告警 Alert</th></tr>"
        )
        for c in contradicts:
            out.write(
                f"<tr><td>{e(_fmt_ts(c.get('ts'), tz))}</td><td>{e(str(c.get('broadcast_id', '')))}</td>"
                f"<td>{e(_fmt_s(c.get('start_s')))}</td><td>{e(str(c.get('text', '')))}</td>"
                f"<td>{e(str(c.get('alert_id') or '—'))}</td></tr>"
            )
        out.write("</table>")
    out.write(
        "<h2>转写 Transcript</h2><table><tr><th>时间 Time</th><th>来源 Source</th><th>文本 Text</th></tr>"
    )
    a0, a1 = float(alert.get("start_s") or 0), float(alert.get("end_s") or 0)
    for u in transcript.get("utterances", []):
        hit = float(u.get("end_s", 0)) >= a0 and float(u.get("start_s", 0)) <= a1
        cls = ' class="hit"' if hit else ""
        out.write(
            f"<tr{cls}><td>{e(_fmt_s(u.get('start_s')))}</td><td>{e(str(u.get('source', '')))}</td>"
            f"<td>{e(str(u.get('text', '')))}</td></tr>"
        )
    out.write("</table>")
    out.write("<h2>审核记录 Decisions</h2>")
    if decisions:
        out.write(
            "<table><tr><th>时间 Time</th><th>审核人 Reviewer</th><th>结论 Decision</th><th>备注 Note</th></tr>"
        )
        for d in decisions:
            out.write(
                f"<tr><td>{e(_fmt_ts(d.get('created_ts'), tz))}</td><td>{e(str(d.get('reviewer', '')))}</td>"
                f"<td>{e(str(d.get('decision', '')))}</td><td>{e(str(d.get('note', '')))}</td></tr>"
            )
        out.write("</table>")
    else:
        out.write("<p>未审核 Not reviewed yet.</p>")
    out.write(
        "<h2>文件与哈希 Files and SHA-256</h2><table><tr><th>文件 File</th><th>大小 Bytes</th>"
        "<th>SHA-256</th></tr>"
    )
    for name, sha, size in files:
        out.write(f'<tr><td>{e(name)}</td><td>{size}</td><td class="mono">{e(sha)}</td></tr>')
    out.write("</table>")
    media = capture.get("media") or []
    if media:
        out.write("<h2>原始录像 Original recording</h2><table><tr><th>文件 File</th><th>SHA-256</th></tr>")
        for m in media:
            out.write(
                f'<tr><td>{e(str(m.get("path", "")))}</td><td class="mono">{e(str(m.get("sha256", "")))}</td></tr>'
            )
        out.write("</table>")
    out.write(
        '<p class="note">manifest.json lists the SHA-256 of every file in this package (this page included); '
        "evidence/manifest.json was written when the evidence was captured. Check with "
        "<code>livewatch evidence verify PACKAGE.zip</code> or <code>sha256sum -c SHA256SUMS</code>.</p>"
    )
    out.write("</body></html>")
    return out.getvalue()


_SUMMARY_CSS = """
body{font-family:"Noto Sans CJK SC","Microsoft YaHei","PingFang SC","WenQuanYi Micro Hei",sans-serif;margin:2em;color:#111;max-width:60em}
h1{margin-bottom:0}.sub{color:#555;margin-top:.2em}
table{border-collapse:collapse;width:100%;margin:.5em 0 1em}
th,td{border:1px solid #bbb;padding:.25em .5em;text-align:left;vertical-align:top;font-size:.9em}
table.kv th{width:14em;background:#f3f3f3}tr.hit td{background:#fff3b0}
.mono{font-family:monospace;word-break:break-all}.snap{max-width:100%;border:1px solid #999}
.note{color:#555;font-size:.85em}
@media print{body{margin:0}h2{page-break-after:avoid}tr{page-break-inside:avoid}}
"""
