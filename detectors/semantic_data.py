"""Labelled lines for the semantic head: corpus files and the rule packs' phrase tables.

Sources (each line keeps a stable id; its half is `detectors.split.split_of(id)`):

- JSON lines with ``id``, ``text``, ``labels`` (``["clean"]`` for a lawful line): every
  ``corpus/real/*.jsonl`` (globbed, so files added later are picked up) and
  ``examples/corpus/clips.jsonl``. A line with a ``context`` field is left out of training: its
  label depends on what was said around it, which a one-line classifier cannot see.
- The phrase tables: every rule's ``should_flag`` line is an example of the rule's category, every
  ``should_not_flag`` line and every pack ``clean`` line is clean. Ids:
  ``phrase:<rule_id>:<sha1(text)[:8]>`` (``phrase:clean:<sha1(text)[:8]>`` for pack clean lines).

Reviewers' decisions come from the store and are read by `app.semantic_tune` (detectors do not
import the store). Everything here is pure apart from reading the files it is given.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from detectors.semantic import CATEGORIES, LabelledLine
from detectors.split import Half, split_of

__all__ = [
    "DEFAULT_CORPUS_DIR",
    "DEFAULT_CLIPS",
    "corpus_files",
    "drop_texts",
    "half_of",
    "merge_by_text",
    "phrase_id",
    "phrase_lines",
    "read_jsonl",
]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS_DIR = ROOT / "corpus" / "real"
DEFAULT_CLIPS = ROOT / "examples" / "corpus" / "clips.jsonl"


def phrase_id(rule_id: str, text: str) -> str:
    return f"phrase:{rule_id}:{hashlib.sha1(text.encode('utf-8')).hexdigest()[:8]}"


def half_of(line: LabelledLine) -> Half:
    return split_of(line.id)


def corpus_files(corpus_dir: Path = DEFAULT_CORPUS_DIR, clips: Path | None = DEFAULT_CLIPS) -> list[Path]:
    """Every ``*.jsonl`` of the corpus directory (sorted), then the synthetic clips file."""
    files = sorted(Path(corpus_dir).glob("*.jsonl")) if Path(corpus_dir).is_dir() else []
    if clips is not None and Path(clips).is_file():
        files.append(Path(clips))
    return files


def read_jsonl(path: Path, *, with_context: bool = False) -> tuple[list[LabelledLine], int]:
    """Labelled lines of one JSON-lines file, and how many were left out for a ``context`` field.

    Unknown labels raise ``ValueError`` naming file and line: a typo must not become a clean line.
    """
    out: list[LabelledLine] = []
    skipped = 0
    known = set(CATEGORIES) | {"clean"}
    for n, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        raw = raw.strip()
        if not raw:
            continue
        d: dict[str, Any] = json.loads(raw)
        if "context" in d and not with_context:
            skipped += 1
            continue
        labels = set(d.get("labels") or [])
        if not labels or labels - known:
            raise ValueError(f"{path}:{n}: labels {sorted(labels)} (known: clean and {list(CATEGORIES)})")
        item_id = str(d.get("id") or f"{Path(path).name}:{n}")
        out.append(
            LabelledLine(item_id, str(d["text"]), frozenset(labels - {"clean"}), f"{Path(path).name}:{n}")
        )
    return out, skipped


def phrase_lines(rules: Any) -> list[LabelledLine]:
    """The phrase tables of a loaded rule set (every rule, enabled or not, and the packs' clean lines)."""
    out: list[LabelledLine] = []
    for r in rules.rules:
        for text in r.should_flag:
            out.append(LabelledLine(phrase_id(r.id, text), text, frozenset({r.category}), f"rule {r.id}"))
        for text in r.should_not_flag:
            out.append(LabelledLine(phrase_id(r.id, text), text, frozenset(), f"rule {r.id} (not)"))
    for c in rules.clean:
        out.append(LabelledLine(phrase_id("clean", c.text), c.text, frozenset(), f"{Path(c.path).name} clean"))
    return out


def _key(text: str) -> str:
    return "".join(text.split())


def merge_by_text(lines: Iterable[LabelledLine]) -> list[LabelledLine]:
    """One line per text (spaces ignored), first id kept, labels merged.

    A category is positive if any source says so; a line is a counter-example of a category only when
    no source calls it an example of it.
    """
    order: list[str] = []
    groups: dict[str, list[LabelledLine]] = {}
    for ln in lines:
        k = _key(ln.text)
        if k not in groups:
            order.append(k)
            groups[k] = []
        groups[k].append(ln)
    out = []
    for k in order:
        g = groups[k]
        if len(g) == 1:
            out.append(g[0])
            continue
        labels = frozenset().union(*(ln.labels for ln in g))
        negative: set[str] = set()
        for ln in g:
            negative |= ln.negative
        if "*" in negative:
            negative = {"*"} if not labels else set(CATEGORIES) - labels
        else:
            negative -= labels
        sources = "; ".join(dict.fromkeys(ln.source for ln in g))
        out.append(LabelledLine(g[0].id, g[0].text, labels, sources, frozenset(negative)))
    return out


def drop_texts(lines: Sequence[LabelledLine], texts: Iterable[str]) -> tuple[list[LabelledLine], int]:
    """Lines whose text is not among `texts` (spaces ignored), and how many were dropped."""
    banned = {_key(t) for t in texts}
    kept = [ln for ln in lines if _key(ln.text) not in banned]
    return kept, len(lines) - len(kept)
