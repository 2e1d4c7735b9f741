"""The import direction of DESIGN.md holds (tools/layers.py), no class in the packages is over the size
limit, and both checks catch a violation."""

from __future__ import annotations

from pathlib import Path

from tools.layers import LAYERS, check, check_class_sizes


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


def test_no_class_is_over_the_size_limit() -> None:
    assert [str(c) for c in check_class_sizes()] == []


def test_a_large_class_is_reported(tmp_path: Path) -> None:
    for pkg in LAYERS:
        (tmp_path / pkg).mkdir()
    body = "".join(f"    def m{i}(self) -> int:\n        return {i}\n" for i in range(10))
    (tmp_path / "store" / "big.py").write_text("import os\n\n\nclass Big:\n" + body)
    (tmp_path / "app" / "small.py").write_text("class Small:\n    pass\n")
    got = [(c.path, c.line, c.name, c.lines) for c in check_class_sizes(tmp_path, limit=15)]
    assert got == [("store/big.py", 4, "Big", 21)]
