"""The scan loads its rules while ASR runs (app/pipeline.py `_AnalysisPrep`).

- Same alerts and the same rules version whether the rule set is loaded in the background during the
  transcript or handed in ready-made.
- A refused rules file fails the scan with the loader's own error while the transcript is still being
  made (the transcriber is not run to its end), and the next scan with a good file works: a failed load
  is not kept.
The transcript is scripted (no model); ffmpeg, SQLite, the rule packs and the pipeline are real.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.config import RootConfig
from app.pipeline import Scanner, ScanOptions
from asr.fake import FakeTranscriber, utterance_from_text
from asr.types import Utterance
from detectors.engine import RuleSet
from store.db import Database

LINES = [(3.0, 6.0, "这款手机壳是顶级材质"), (10.0, 13.0, "全网最低价只要九十九"), (20.0, 23.0, "欢迎来到直播间")]


def _cfg(**rules: Any) -> RootConfig:
    return RootConfig.model_validate({"semantic": {"enabled": False}, "rules": rules})


def _ids(result: Any) -> list[tuple[str, str]]:
    return sorted((a["alert_id"], a["category"]) for a in result.alerts)


def test_background_load_gives_the_same_alerts_as_rules_handed_in(tmp_path: Path, corpus: Path) -> None:
    media = corpus / "broadcast_0.mp4"
    cfg = _cfg()
    bg = Scanner(cfg, Database.for_data_dir(tmp_path / "a"), transcriber=FakeTranscriber.from_lines(LINES),
                 data_dir=tmp_path / "a")
    got = bg.scan(media, ScanOptions(stream_id="room", video=False))
    ready = RuleSet.load(cfg.rule_dirs())
    fg = Scanner(cfg, Database.for_data_dir(tmp_path / "b"), transcriber=FakeTranscriber.from_lines(LINES),
                 rules=ready, data_dir=tmp_path / "b")
    want = fg.scan(media, ScanOptions(stream_id="room", video=False))
    assert _ids(got) == _ids(want)
    assert {a["category"] for a in got.alerts} >= {"false_claim", "price_fraud"}
    assert bg.rules.version == ready.version


class _Endless:
    """A transcriber that never ends on its own: it yields a line each time it is asked and counts them.
    Only an error raised by the scan between lines stops it."""

    def __init__(self) -> None:
        self.yielded = 0
        self.stopped = threading.Event()

    def transcribe(self, audio: np.ndarray, **_: Any) -> Iterator[Utterance]:
        try:
            t = 0.0
            while True:
                self.yielded += 1
                yield utterance_from_text(t, t + 1.0, "欢迎来到直播间")
                t += 1.0
        finally:
            self.stopped.set()


def test_refused_rules_file_fails_the_scan_during_the_transcript(tmp_path: Path, corpus: Path) -> None:
    bad = tmp_path / "rules"
    bad.mkdir()
    (bad / "bad.yaml").write_text("rules:\n  - id: x.bad\n    category: vulgar\n    code: C1\n    regex: '(a+)+$'\n",
                                  encoding="utf-8")
    endless = _Endless()
    scanner = Scanner(_cfg(dirs=[str(bad)]), Database.for_data_dir(tmp_path / "d"), transcriber=endless,
                      data_dir=tmp_path / "d")
    with pytest.raises(Exception) as err:
        scanner.scan(corpus / "broadcast_0.mp4", ScanOptions(stream_id="room", video=False))
    assert "bad.yaml" in str(err.value)
    assert endless.stopped.is_set()  # the transcript was abandoned, not run to an end it does not have
    (bad / "bad.yaml").unlink()  # fixed: the next scan loads again and works
    scanner._transcriber = FakeTranscriber.from_lines(LINES)
    ok = scanner.scan(corpus / "broadcast_0.mp4", ScanOptions(stream_id="room", video=False))
    assert {a["category"] for a in ok.alerts} >= {"false_claim", "price_fraud"}
