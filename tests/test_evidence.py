"""Evidence folders cut from real media with the real ffmpeg, checked by decoding with PyAV."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import av
import pytest

from alerts.evidence import EvidenceRequest, alert_payload, sha256_file, write_evidence
from alerts.grouping import make_alert
from alerts.types import MediaRef
from asr.types import Utterance, Word
from detectors.types import Detection
from ingest.ffmpeg import probe


def _alert(start: float, end: float):
    d = Detection(
        rule_id="false_claim.absolute",
        category="false_claim",
        code="A1",
        severity="high",
        law="广告法 第9条",
        source="speech",
        start_s=start,
        end_s=end,
        matched="顶级",
        text="这款手机壳顶级材质",
    )
    return make_alert([d], broadcast_id="b", rules_version="v1", context="这款手机壳顶级材质")


def _request(media: Path, tmp: Path, start: float, end: float) -> EvidenceRequest:
    info = probe(media)
    ref = MediaRef(str(media), sha256_file(media), media.stat().st_size, 0.0, info.duration_s, info.has_video)
    alert = _alert(start, end)
    utt = Utterance(
        0, start, end, "这款手机壳", (Word("这款", start, start + 1), Word("手机壳", start + 1, end))
    )
    return EvidenceRequest(
        alert=alert,
        media=ref,
        originals=(ref,),
        utterances=(utt,),
        out_root=tmp,
        pre_roll_s=10.0,
        post_roll_s=5.0,
        snapshot=True,
        tool_version="test",
        stream={"stream_id": None},
        payload=alert_payload(alert, stream_id=None, media_path=str(media)),
    )


def _decodes(path: Path) -> float:
    with av.open(str(path)) as c:
        frames = sum(1 for _ in c.decode(audio=0))
        assert frames > 0
        return float(c.duration / av.time_base)


@pytest.mark.parametrize("name", ["broadcast_0.mp4", "broadcast_1.flac"])
def test_clip_is_a_playable_stream_copy_with_pre_and_post_roll(
    corpus: Path, tmp_path: Path, name: str
) -> None:
    media = corpus / name
    before = sha256_file(media)
    ev = write_evidence(_request(media, tmp_path, 33.5, 37.9))
    folder = Path(ev.dir)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    clip = folder / manifest["clip"]["file"]
    dur = _decodes(clip)
    assert manifest["clip"]["reencoded"] is False
    # stream copy may start at an earlier keyframe, never later; the whole moment and rolls are inside
    assert manifest["clip"]["start_s"] <= 33.5 - 10.0 + 0.05
    assert manifest["clip"]["end_s"] >= 37.9 + 5.0 - 0.1
    assert dur >= 37.9 - 33.5 + 15.0 - 0.2
    # every file is hashed, and the original was only read
    for f in manifest["files"]:
        assert sha256_file(folder / f["name"]) == f["sha256"]
    assert manifest["media"][0]["sha256"] == before == sha256_file(media)
    assert ev.manifest_sha256 == sha256_file(folder / "manifest.json")
    kinds = {f["kind"] for f in manifest["files"]}
    assert ("snapshot" in kinds) == name.endswith(".mp4")
    transcript = json.loads((folder / "transcript.json").read_text(encoding="utf-8"))
    assert transcript["utterances"][0]["words"][0][0] == "这款"


def test_clip_near_start_is_clamped_and_evidence_is_reused(corpus: Path, tmp_path: Path) -> None:
    req = _request(corpus / "broadcast_0.mp4", tmp_path, 2.0, 4.9)
    ev = write_evidence(req)
    manifest = json.loads((Path(ev.dir) / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["clip"]["start_s"] == 0.0
    assert manifest["clip"]["moment_offset_s"] == pytest.approx(2.0, abs=0.05)
    again = write_evidence(req)
    assert again.manifest_sha256 == ev.manifest_sha256
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("believed", ["probed", "overstated"])
def test_clip_cut_short_records_the_post_roll_actually_cut(
    corpus: Path, tmp_path: Path, ffmpeg: str, believed: str
) -> None:
    """A recording that ends 1.4 s after the moment (a crash): the manifest says 1.4 s, not the 5.0 asked,
    whether the caller knew the recording's real length or still believed it longer."""
    short = tmp_path / "crashed.flac"
    subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(corpus / "broadcast_1.flac"), "-t", "39.3",
         "-c", "copy", str(short)],
        check=True,
    )
    req = _request(short, tmp_path / "ev", 33.5, 37.9)
    if believed == "overstated":
        from dataclasses import replace

        req = replace(req, media=replace(req.media, duration_s=60.0))
    ev = write_evidence(req)
    manifest = json.loads((Path(ev.dir) / "manifest.json").read_text(encoding="utf-8"))
    clip = manifest["clip"]
    # the copy ends on a FLAC frame just past 39.3 s; its header still says two minutes
    real_end = _decoded_s(short)
    assert 39.3 <= real_end < 39.6
    assert clip["post_roll_s"] == pytest.approx(real_end - 37.9, abs=0.05)
    assert clip["requested_post_roll_s"] == 5.0 and clip["post_roll_short"] is True
    assert clip["end_s"] == pytest.approx(real_end, abs=0.05)
    assert clip["pre_roll_s"] >= 10.0 - 0.05 and clip["pre_roll_short"] is False
    assert clip["end_s"] - clip["start_s"] == pytest.approx(_decoded_s(Path(ev.dir) / clip["file"]), abs=0.05)


def _decoded_s(path: Path) -> float:
    """Seconds of audio actually in a file (its header may claim more)."""
    with av.open(str(path)) as c:
        frames = list(c.decode(audio=0))
    return sum(f.samples for f in frames) / frames[0].sample_rate
