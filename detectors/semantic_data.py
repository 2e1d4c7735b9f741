"""Labelled lines for the semantic head: corpus files and the rule packs' phrase tables.

Lines, ids and halves are read exactly as `livewatch eval` reads them (`detectors.evaluate`'s
`load_labelled` and `phrase_items`), so a line the head trained on is a tune line to the evaluator too:

- JSON lines with ``id``, ``text``, ``labels`` (``["clean"]`` for a lawful line): every
  ``corpus/real/*.jsonl`` (globbed, so files added later are picked up) and
  ``examples/corpus/clips.jsonl``. A line with a ``context`` field is left out: its label depends on
  facts outside the line (price history, product data) that a one-line classifier cannot see.
- The phrase tables of enabled rules: a ``should_flag`` line is an example of the rule's category
  (and, like a corpus line, a counter-example of the others); a ``should_not_flag`` line is a
  counter-example of the rule's category only; a pack ``clean`` line of every category. Ids
  ``phrase:<rule_id>:<flag|not>:<sha1(text)[:10]>`` and ``phrase:clean:<sha1(text)[:10]>``.

Reviewers' decisions come from the store and are read by `app.semantic_tune` (detectors do not
import the store). Everything here is pure apart from reading the files it is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from detectors.evaluate import LabelledItem, load_labelled, phrase_items
from detectors.semantic import CATEGORIES, LabelledLine
from detectors.split import Half, split_of

__all__ = [
    "DEFAULT_CLIPS",
    "DEFAULT_CORPUS_DIR",
    "corpus_files",
    "drop_texts",
    "half_of",
    "merge_by_text",
    "phrase_lines",
    "read_jsonl",
]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS_DIR = ROOT / "corpus" / "real"
DEFAULT_CLIPS = ROOT / "examples" / "corpus" / "clips.jsonl"
# lines in new wording written blind from DOMAIN.md (examples/corpus/README.md); tune half only, like all
DEFAULT_PROBE = ROOT / "examples" / "corpus" / "probe.jsonl"
DEFAULT_PROBES = (
    DEFAULT_PROBE,
    ROOT / "examples" / "corpus" / "probe2.jsonl",
    ROOT / "examples" / "corpus" / "probe3.jsonl",
)


def half_of(line: LabelledLine) -> Half:
    return split_of(line.id)


def corpus_files(corpus_dir: Path = DEFAULT_CORPUS_DIR, clips: Path | None = DEFAULT_CLIPS) -> list[Path]:
    """Every ``*.jsonl`` of the corpus directory (sorted), then the synthetic clips and probe files."""
    files = sorted(Path(corpus_dir).glob("*.jsonl")) if Path(corpus_dir).is_dir() else []
    if clips is not None and Path(clips).is_file():
        files.append(Path(clips))
        if clips == DEFAULT_CLIPS:
            files.extend(p for p in DEFAULT_PROBES if p.is_file())
    return files


def _line(it: LabelledItem) -> LabelledLine:
    unknown = set(it.labels) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"{it.ref}: unknown labels {sorted(unknown)} (known: clean and {list(CATEGORIES)})")
    if it.scope is None or it.labels:
        negative = frozenset({"*"})
    else:
        negative = frozenset(it.scope)
    return LabelledLine(it.id or it.ref, it.text, frozenset(it.labels), it.ref, negative)


def read_jsonl(path: Path) -> tuple[list[LabelledLine], int]:
    """Labelled lines of one JSON-lines file, and how many were left out for a ``context`` field."""
    with_ctx = load_labelled(Path(path), skip_context=False)
    lines = [_line(it) for it in load_labelled(Path(path))]
    return lines, len(with_ctx) - len(lines)


def phrase_lines(rules: Any) -> list[LabelledLine]:
    """The phrase tables of a loaded rule set, as `livewatch eval --phrase-tables` reads them."""
    return [_line(it) for it in phrase_items(rules)]


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
