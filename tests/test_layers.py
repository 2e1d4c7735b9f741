"""The import direction of DESIGN.md holds (tools/layers.py), and the check catches a violation."""

from __future__ import annotations

from pathlib import Path

from tools.layers import LAYERS, check


def test_no_import_points_against_the_layering() -> None:
    assert [str(v) for v in check()] == []


def test_an_upward_import_is_reported(tmp_path: Path) -> None:
    for pkg in LAYERS:
        (tmp_path / pkg).mkdir()
    (tmp_path / "alerts" / "bad.py").write_text("import os\nfrom store.db import Database\n")
    (tmp_path / "review" / "lazy.py").write_text("def f():\n    from app import monitor\n")
    (tmp_path / "store" / "rel.py").write_text("from ..review import x\n")
    (tmp_path / "app" / "ok.py").write_text("from review import api\nfrom ingest import recorder\n")
    (tmp_path / "asr" / "ok.py").write_text("from ingest.types import MediaSegment\nfrom . import audio\n")
    got = sorted((v.path, v.line, v.imported) for v in check(tmp_path))
    assert got == [
        ("alerts/bad.py", 2, "store.db"),
        ("review/lazy.py", 2, "app"),
        ("store/rel.py", 1, "review"),
    ]
