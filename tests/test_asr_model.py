"""Model resolution and assembly of the embedded model, on a fake package layout (small files)."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

import asr.model
from asr.config import AsrConfig
from asr.errors import ModelError
from asr.model import EmbeddedParts, ensure_embedded_model, locate_embedded, resolve_model

PART1 = bytes(range(256)) * 4000  # ~1 MB
PART2 = b"part-two" * 50_000


def make_parts(root: Path, *, with_record: bool = False) -> EmbeddedParts:
    d1, d2 = root / "pkg1" / "data", root / "pkg2" / "data"
    d1.mkdir(parents=True)
    d2.mkdir(parents=True)
    (d1 / "model.bin.part1").write_bytes(PART1)
    (d2 / "model.bin.part2").write_bytes(PART2)
    files = []
    for name, body in (
        ("config.json", '{"a": 1}'),
        ("tokenizer.json", '{"t": 2}'),
        ("vocabulary.json", "[]"),
    ):
        (d2 / name).write_text(body)
        files.append(d2 / name)
    parts = (d1 / "model.bin.part1", d2 / "model.bin.part2")
    expected = (
        {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (*parts, *files)} if with_record else {}
    )
    return EmbeddedParts(parts=parts, files=tuple(files), expected_sha256=expected)


def assert_model_ok(target: Path) -> None:
    assert (target / "model.bin").read_bytes() == PART1 + PART2
    assert json.loads((target / "config.json").read_text()) == {"a": 1}
    assert (target / "tokenizer.json").is_file() and (target / "vocabulary.json").is_file()
    stamp = json.loads((target / "stamp.json").read_text())
    assert stamp["outputs"]["model.bin"]["sha256"] == hashlib.sha256(PART1 + PART2).hexdigest()
    assert stamp["outputs"]["model.bin"]["size"] == len(PART1) + len(PART2)
    assert not [p for p in target.iterdir() if p.name.endswith(".tmp")], "temp files left behind"


def test_first_use_assembles_and_stamps(tmp_path: Path) -> None:
    parts = make_parts(tmp_path, with_record=True)
    target = tmp_path / "cache" / "models" / "whisper-base"
    assert ensure_embedded_model(target, parts) == target
    assert_model_ok(target)


def test_second_use_reuses_without_rewriting(tmp_path: Path) -> None:
    parts = make_parts(tmp_path)
    target = tmp_path / "m"
    ensure_embedded_model(target, parts)
    before = (target / "model.bin").stat()
    ensure_embedded_model(target, parts)
    after = (target / "model.bin").stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_corrupt_stamp_rebuilds(tmp_path: Path) -> None:
    parts = make_parts(tmp_path)
    target = tmp_path / "m"
    ensure_embedded_model(target, parts)
    (target / "stamp.json").write_text("{not json")
    ensure_embedded_model(target, parts)
    assert_model_ok(target)


def test_truncated_model_bin_rebuilds(tmp_path: Path) -> None:
    parts = make_parts(tmp_path)
    target = tmp_path / "m"
    ensure_embedded_model(target, parts)
    with (target / "model.bin").open("r+b") as f:
        f.truncate(1000)
    ensure_embedded_model(target, parts)
    assert_model_ok(target)


def test_same_size_corruption_is_caught_by_hash_when_mtime_moves(tmp_path: Path) -> None:
    parts = make_parts(tmp_path)
    target = tmp_path / "m"
    ensure_embedded_model(target, parts)
    model = target / "model.bin"
    data = bytearray(model.read_bytes())
    data[500] ^= 0xFF
    model.write_bytes(bytes(data))
    st = model.stat()
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    ensure_embedded_model(target, parts)
    assert_model_ok(target)


def test_touched_but_intact_file_is_rehashed_once_not_rebuilt(tmp_path: Path) -> None:
    parts = make_parts(tmp_path)
    target = tmp_path / "m"
    ensure_embedded_model(target, parts)
    model = target / "model.bin"
    st = model.stat()
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    ensure_embedded_model(target, parts)
    assert model.stat().st_ino == st.st_ino  # not rewritten
    stamp = json.loads((target / "stamp.json").read_text())
    assert stamp["outputs"]["model.bin"]["mtime_ns"] == st.st_mtime_ns + 5_000_000_000  # hash cached


def test_missing_output_file_rebuilds(tmp_path: Path) -> None:
    parts = make_parts(tmp_path)
    target = tmp_path / "m"
    ensure_embedded_model(target, parts)
    (target / "tokenizer.json").unlink()
    ensure_embedded_model(target, parts)
    assert_model_ok(target)


def test_changed_package_part_rebuilds(tmp_path: Path) -> None:
    parts = make_parts(tmp_path)
    target = tmp_path / "m"
    ensure_embedded_model(target, parts)
    parts.parts[1].write_bytes(PART2 + b"new version")
    ensure_embedded_model(target, parts)
    assert (target / "model.bin").read_bytes() == PART1 + PART2 + b"new version"


def test_damaged_package_is_refused(tmp_path: Path) -> None:
    parts = make_parts(tmp_path, with_record=True)
    parts.parts[0].write_bytes(b"x" * len(PART1))  # same size, wrong content vs. RECORD
    with pytest.raises(ModelError, match=r"model\.bin\.part1 does not match its package RECORD"):
        ensure_embedded_model(tmp_path / "m", parts)


def test_missing_package_file_is_a_model_error(tmp_path: Path) -> None:
    parts = make_parts(tmp_path)
    parts.parts[0].unlink()
    with pytest.raises(ModelError, match=r"model\.bin\.part1 is missing"):
        ensure_embedded_model(tmp_path / "m", parts)


def _assemble_in_child(args: tuple[str, str]) -> str:
    root, target = args
    parts = EmbeddedParts(
        parts=(Path(root, "pkg1/data/model.bin.part1"), Path(root, "pkg2/data/model.bin.part2")),
        files=tuple(Path(root, "pkg2/data", n) for n in ("config.json", "tokenizer.json", "vocabulary.json")),
    )
    return str(ensure_embedded_model(Path(target), parts))


def test_concurrent_processes_assemble_once_and_consistently(tmp_path: Path) -> None:
    make_parts(tmp_path)
    target = tmp_path / "shared" / "whisper-base"
    with ProcessPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(_assemble_in_child, [(str(tmp_path), str(target))] * 8))
    assert results == [str(target)] * 8
    assert_model_ok(target)


# -- resolve_model -------------------------------------------------------------------------------------


def test_base_resolves_to_the_assembled_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = make_parts(tmp_path)
    monkeypatch.setattr(asr.model, "locate_embedded", lambda: parts)
    path = resolve_model(AsrConfig(cache_dir=tmp_path / "cache"))
    assert path == str(tmp_path / "cache" / "models" / "whisper-base")
    assert_model_ok(Path(path))


def test_missing_local_dir_is_a_model_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelError, match=f"model directory {missing} does not exist"):
        resolve_model(AsrConfig(model=str(missing)))


def test_local_dir_without_model_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match=r"lacks model\.bin"):
        resolve_model(AsrConfig(model=str(tmp_path)))


def test_local_file_instead_of_dir_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "model.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelError, match="is not a directory"):
        resolve_model(AsrConfig(model=str(f)))


def test_valid_local_dir_is_used_as_is(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"x")
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(AsrConfig(model=str(tmp_path))) == str(tmp_path.resolve())


@pytest.mark.parametrize("name", ["large-v3", "small", "Systran/faster-whisper-small"])
def test_other_names_pass_through_to_faster_whisper(name: str) -> None:
    assert resolve_model(AsrConfig(model=name)) == name


def test_installed_packages_are_located_with_their_record_hashes() -> None:
    parts = locate_embedded()
    assert [p.name for p in parts.parts] == ["model.bin.part1", "model.bin.part2"]
    assert sorted(p.name for p in parts.files) == ["config.json", "tokenizer.json", "vocabulary.json"]
    assert all(p.is_file() for p in (*parts.parts, *parts.files))
    assert set(parts.expected_sha256) == {*parts.parts, *parts.files}
