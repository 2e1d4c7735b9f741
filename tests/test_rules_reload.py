"""Hot reload: a running monitor picks up edited packs; a broken edit is refused and the old set stays."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from asr.types import Utterance
from detectors.engine import RuleHolder

PACK = """\
pack: site
category: false_claim
law: 广告法 第9条
rules:
  - id: site.a1.words
    code: A1
    severity: high
    terms: [{terms}]
    should_flag: [顶呱呱]
    should_not_flag: [很好]
"""


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def categories(holder: RuleHolder, text: str, index: int = 0) -> list[str]:
    rules = holder.maybe_reload()
    return [d.rule_id for d in rules.detect(Utterance(index, 0.0, 1.0, text))]


def test_edit_takes_effect_on_next_utterance(tmp_path: Path) -> None:
    pack = tmp_path / "site.yaml"
    pack.write_text(PACK.format(terms="顶呱呱"), encoding="utf-8")
    clock = FakeClock()
    holder = RuleHolder([tmp_path], min_interval_s=1.0, clock=clock)
    v1 = holder.current.version
    assert categories(holder, "这个面霜顶呱呱") == ["site.a1.words"]
    assert categories(holder, "这个面霜天下无双") == []

    pack.write_text(PACK.format(terms="顶呱呱, 天下无双"), encoding="utf-8")
    assert categories(holder, "这个面霜天下无双") == []  # within the check interval: not looked at yet
    clock.now += 1.5
    assert categories(holder, "这个面霜天下无双") == ["site.a1.words"]
    assert holder.current.version != v1


def test_broken_edit_is_refused_and_old_set_keeps_working(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pack = tmp_path / "site.yaml"
    pack.write_text(PACK.format(terms="顶呱呱"), encoding="utf-8")
    holder = RuleHolder([tmp_path], min_interval_s=0.0)
    v1 = holder.current.version

    pack.write_text(
        PACK.format(terms="顶呱呱").replace("severity: high", "severity: urgent"), encoding="utf-8"
    )
    with caplog.at_level(logging.ERROR, logger="detectors.engine"):
        assert categories(holder, "这个面霜顶呱呱") == ["site.a1.words"]
    assert holder.current.version == v1
    assert holder.last_error is not None and holder.last_error.line == 7
    assert any("refused" in r.getMessage() and "site.yaml:7" in r.getMessage() for r in caplog.records)

    # the refused state is not retried until the files change again
    caplog.clear()
    holder.maybe_reload()
    assert not caplog.records

    pack.write_text(PACK.format(terms="顶呱呱, 天下无双"), encoding="utf-8")
    assert categories(holder, "天下无双") == ["site.a1.words"]
    assert holder.last_error is None and holder.current.version != v1


def test_deleting_a_pack_is_a_change(tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text(PACK.format(terms="顶呱呱"), encoding="utf-8")
    (tmp_path / "more.yaml").write_text(
        PACK.format(terms="天下无双").replace("site.a1.words", "site.a1.more"), encoding="utf-8"
    )
    holder = RuleHolder([tmp_path], min_interval_s=0.0)
    assert categories(holder, "天下无双") == ["site.a1.more"]
    (tmp_path / "more.yaml").unlink()
    assert categories(holder, "天下无双") == []


def test_readers_never_see_a_half_loaded_set(tmp_path: Path) -> None:
    pack = tmp_path / "site.yaml"
    pack.write_text(PACK.format(terms="顶呱呱"), encoding="utf-8")
    holder = RuleHolder([tmp_path], min_interval_s=0.0)
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                got = categories(holder, "顶呱呱")
                assert got == ["site.a1.words"]
        except BaseException as e:  # collected and re-raised in the test thread
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(15):
        pack.write_text(PACK.format(terms="顶呱呱" + ", 词" * (i % 3 + 1)), encoding="utf-8")
        holder.maybe_reload(force=True)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
