"""The real-world labelled corpus (corpus/real/*.jsonl) keeps its schema: every line parses, carries a
source and a reason, uses known categories and a code of the DOMAIN.md form, and ids are unique across
files (ids decide the tune/test half). Failures name the file and id only, never the text: half of
these lines are the test half and are not to be read while writing rules."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from detectors.split import split_of
from detectors.types import CATEGORIES

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "corpus" / "real"
FILES = sorted(REAL.glob("*.jsonl"))
KINDS = {
    "case",
    "judgment",
    "news",
    "platform_rule",
    "checker_test",
    "list",
    "product_copy",
    "guidance",
    "law_text",
}
CODE = re.compile(r"^[A-H][0-9]?$")
REQUIRED = ("id", "text", "labels", "source", "reason", "paraphrase")
# The first two files predate `kind` and give `code` only where one was clear; later files always do.
OLDER = {"seed.jsonl", "context.jsonl"}


def _lines(path: Path) -> list[tuple[int, dict[str, object]]]:
    out = []
    for i, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if raw.strip():
            out.append((i, json.loads(raw)))
    return out


def test_the_corpus_has_files() -> None:
    assert len(FILES) >= 8
    assert (REAL / "README.md").is_file()


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_line_follows_the_schema(path: Path) -> None:
    problems: list[str] = []
    for i, d in _lines(path):
        where = f"{path.name}:{i} ({d.get('id')})"
        missing = [k for k in REQUIRED if k not in d]
        if missing:
            problems.append(f"{where}: missing {missing}")
            continue
        text, labels = d["text"], d["labels"]
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{where}: empty text")
        if d["paraphrase"] is not False:
            problems.append(f"{where}: paraphrase must be false")
        if "kind" in d and d["kind"] not in KINDS:
            problems.append(f"{where}: unknown kind")
        if not (isinstance(d["source"], str) and d["source"].strip()):
            problems.append(f"{where}: empty source")
        if not (isinstance(d["reason"], str) and d["reason"].strip()):
            problems.append(f"{where}: empty reason")
        if "context" in d and not (isinstance(d["context"], str) and d["context"].strip()):
            problems.append(f"{where}: empty context")
        if not isinstance(labels, list) or not labels:
            problems.append(f"{where}: labels must be a non-empty list")
            continue
        if labels == ["clean"]:
            if d.get("code"):
                problems.append(f"{where}: a clean line has a code")
            continue
        unknown = [x for x in labels if x not in CATEGORIES]
        if unknown:
            problems.append(f"{where}: unknown labels {unknown}")
        code = d.get("code")
        if code is None and path.name in OLDER:
            continue
        if not (isinstance(code, str) and CODE.match(code)):
            problems.append(f"{where}: violating line needs a DOMAIN code (A1..H)")
    assert not problems, "\n".join(problems)


def test_ids_are_unique_across_files_and_both_halves_are_populated() -> None:
    seen: dict[str, str] = {}
    dups: list[str] = []
    halves = {"tune": 0, "test": 0}
    for path in FILES:
        for _, d in _lines(path):
            iid = str(d["id"])
            if iid in seen:
                dups.append(f"{iid} in {seen[iid]} and {path.name}")
            seen[iid] = path.name
            halves[split_of(iid)] += 1
    # nor shared with the synthetic corpus (examples/corpus/*.jsonl): one id names one line everywhere
    for path in sorted((ROOT / "examples" / "corpus").glob("*.jsonl")):
        for _, d in _lines(path):
            if str(d["id"]) in seen:
                dups.append(f"{d['id']} in {seen[str(d['id'])]} and examples/corpus/{path.name}")
    assert not dups, "\n".join(dups)
    assert halves["tune"] > 200 and halves["test"] > 200, halves


def test_the_newer_files_name_the_kind_of_source() -> None:
    missing = [f"{p.name}:{i}" for p in FILES if p.name not in OLDER for i, d in _lines(p) if "kind" not in d]
    assert not missing, missing


def test_the_readme_counts_every_file() -> None:
    readme = (REAL / "README.md").read_text(encoding="utf-8")
    for path in FILES:
        assert f"`{path.name}`" in readme, f"{path.name} is not described in corpus/real/README.md"
