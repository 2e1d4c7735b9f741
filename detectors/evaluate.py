"""Checks of a rule set against examples: phrase tables, and precision/recall on labelled data.

Labelled data comes in two shapes, both read by `load_labelled`:

- JSON lines, one object a line with ``text`` and ``labels`` (``["clean"]`` or categories), like
  ``examples/corpus/clips.jsonl``;
- a broadcast JSON with ``spans`` (``start_s``, ``end_s``, ``text``, ``labels``) and optionally
  ``overlays`` (on-screen captions, same fields), like ``examples/corpus/broadcast_0.json``.

`evaluate_items` scores the rules on the labelled texts: per category, a line counts a true positive
for each labelled category some rule raised, a false negative for each it missed, and a false
positive for each category raised that is not among its labels. Per rule, a hit is right when its
category is among the line's labels.

`evaluate_transcript` scores detections on a real ASR transcript (segments with words and times)
against a broadcast's spans the way ``tools/score.py`` does: a detection hits a span when its
category is one of the span's labels and it overlaps the span widened by `slack_s`.

All functions are pure apart from reading the files they are given.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asr.types import Utterance, Word
from detectors.engine import RuleSet
from detectors.split import Half, split_of
from detectors.types import Detection

__all__ = [
    "EvalReport",
    "LabelledItem",
    "PhraseFailure",
    "evaluate_items",
    "evaluate_transcript",
    "load_labelled",
    "load_transcript",
    "phrase_items",
    "run_phrase_tables",
]


@dataclass(frozen=True, slots=True)
class PhraseFailure:
    rule_id: str  # "" for a pack's clean line
    kind: str  # should_flag | should_not_flag | clean
    phrase: str
    got: tuple[str, ...]  # rule ids that fired (should_not_flag/clean) or nothing (should_flag)
    path: str
    line: int


def run_phrase_tables(rules: RuleSet) -> tuple[int, list[PhraseFailure]]:
    """Run every enabled rule's phrase table and every pack's clean lines; (phrases run, failures)."""
    failures: list[PhraseFailure] = []
    count = 0
    for r in rules.rules:
        if not r.enabled:
            continue
        for phrase in r.should_flag:
            count += 1
            hits, silenced, _ = rules.match(phrase)
            if not any(h.rule_id == r.id for h in hits):
                why = tuple(f"{h.rule_id}: {h.reason}" for h in silenced if h.rule_id == r.id)
                failures.append(PhraseFailure(r.id, "should_flag", phrase, why, str(r.path), r.line))
        for phrase in r.should_not_flag:
            count += 1
            hits, _, _ = rules.match(phrase)
            fired = tuple(
                f"{h.rule_id}: {h.matched} ({h.mode} {h.score:.0f})" for h in hits if h.rule_id == r.id
            )
            if fired:
                failures.append(PhraseFailure(r.id, "should_not_flag", phrase, fired, str(r.path), r.line))
    for c in rules.clean:
        count += 1
        hits, _, _ = rules.match(c.text)
        if hits:
            fired = tuple(f"{h.rule_id}: {h.matched} ({h.mode} {h.score:.0f})" for h in hits)
            failures.append(PhraseFailure("", "clean", c.text, fired, str(c.path), c.line))
    return count, failures


@dataclass(frozen=True, slots=True)
class LabelledItem:
    text: str
    labels: frozenset[str]  # categories; empty for a clean line
    source: str = "speech"
    start_s: float | None = None
    end_s: float | None = None
    ref: str = ""  # file:line or file#span for reports
    id: str = ""  # stable id; its hash decides the half (detectors.split)
    scope: frozenset[str] | None = None  # categories this item can score (None: all)

    @property
    def half(self) -> Half:
        return split_of(self.id or self.ref)


def phrase_items(rules: RuleSet) -> list[LabelledItem]:
    """The phrase tables as labelled items: a should_flag phrase is labelled with its rule's category
    and scores only that category; a should_not_flag phrase scores only false alarms of that
    category; a pack's clean line is clean for every category. Ids hash the rule id and the phrase."""
    out: list[LabelledItem] = []
    for r in rules.rules:
        if not r.enabled:
            continue
        for kind, phrases in (("flag", r.should_flag), ("not", r.should_not_flag)):
            for ph in phrases:
                pid = f"phrase:{r.id}:{kind}:{hashlib.sha1(ph.encode()).hexdigest()[:10]}"
                labels = frozenset([r.category]) if kind == "flag" else frozenset()
                out.append(
                    LabelledItem(
                        ph, labels, ref=f"{r.path.name}:{r.line}", id=pid, scope=frozenset([r.category])
                    )
                )
    for c in rules.clean:
        pid = f"phrase:clean:{hashlib.sha1(c.text.encode()).hexdigest()[:10]}"
        out.append(LabelledItem(c.text, frozenset(), ref=f"{c.path.name}:{c.line}", id=pid))
    return out


def load_labelled(path: Path, *, overlays: bool = False, skip_context: bool = True) -> list[LabelledItem]:
    """Labelled texts from a JSON-lines file or a broadcast JSON (see the module docstring)."""
    path = Path(path)
    raw = path.read_text(encoding="utf-8")
    items: list[LabelledItem] = []
    if path.suffix == ".jsonl":
        for i, line in enumerate(raw.splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            d = json.loads(line)
            if skip_context and d.get("context"):
                continue  # needs facts outside the line (price history, product data)
            items.append(
                LabelledItem(
                    d["text"],
                    _labels(d["labels"]),
                    ref=f"{path.name}:{i}",
                    id=str(d.get("id") or f"{path.stem}:{i}"),
                )
            )
        return items
    d = json.loads(raw)
    if not isinstance(d, dict) or "spans" not in d:
        raise ValueError(f"{path}: expected JSON lines (.jsonl) or a JSON object with 'spans'")
    groups: list[tuple[str, list[dict[str, Any]]]] = [("speech", d["spans"])]
    if overlays:
        groups.append(("screen", d.get("overlays", [])))
    for source, spans in groups:
        for i, sp in enumerate(spans):
            items.append(
                LabelledItem(
                    sp["text"],
                    _labels(sp["labels"]),
                    source,
                    sp["start_s"],
                    sp["end_s"],
                    ref=f"{path.name}#{source}{i}",
                    id=str(sp.get("id") or f"{path.stem}#{source}{i}"),
                )
            )
    return items


def _labels(labels: Iterable[str]) -> frozenset[str]:
    return frozenset(x for x in labels if x != "clean")


@dataclass(slots=True)
class EvalReport:
    tp: Counter[str] = field(default_factory=Counter)
    fn: Counter[str] = field(default_factory=Counter)
    fp: Counter[str] = field(default_factory=Counter)
    rule_hits: Counter[str] = field(default_factory=Counter)
    rule_right: Counter[str] = field(default_factory=Counter)
    misses: list[tuple[str, str, str]] = field(default_factory=list)  # (ref, category, text)
    false_alarms: list[tuple[str, str, str, str]] = field(default_factory=list)  # (ref, rule, matched, text)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    clean_lines: int = 0  # lines labelled clean
    clean_alarmed: int = 0  # of those, lines on which anything fired

    @property
    def clean_alarm_rate(self) -> float:
        return self.clean_alarmed / self.clean_lines if self.clean_lines else 0.0

    def merge(self, other: EvalReport) -> None:
        for name in ("tp", "fn", "fp", "rule_hits", "rule_right"):
            getattr(self, name).update(getattr(other, name))
        self.misses.extend(other.misses)
        self.false_alarms.extend(other.false_alarms)
        self.alerts.extend(other.alerts)
        self.clean_lines += other.clean_lines
        self.clean_alarmed += other.clean_alarmed

    def summary(self) -> dict[str, Any]:
        cats = {}
        for c in self.categories():
            tp, fn, fp = self.tp[c], self.fn[c], self.fp[c]
            cats[c] = {
                "tp": tp,
                "fn": fn,
                "fp": fp,
                "recall": round(tp / (tp + fn), 3) if tp + fn else None,
                "precision": round(tp / (tp + fp), 3) if tp + fp else None,
            }
        return {
            "recall": round(self.recall, 3),
            "precision": round(self.precision, 3),
            "clean_lines": self.clean_lines,
            "clean_alarmed": self.clean_alarmed,
            "clean_alarm_rate": round(self.clean_alarm_rate, 3),
            "categories": cats,
        }

    @property
    def recall(self) -> float:
        t, n = sum(self.tp.values()), sum(self.fn.values())
        return t / (t + n) if t + n else 1.0

    @property
    def precision(self) -> float:
        t, p = sum(self.tp.values()), sum(self.fp.values())
        return t / (t + p) if t + p else 1.0

    def categories(self) -> list[str]:
        return sorted(set(self.tp) | set(self.fn) | set(self.fp))


def _alert(d: Detection) -> dict[str, Any]:
    return {
        "category": d.category,
        "code": d.code,
        "rule": d.rule_id,
        "severity": d.severity,
        "start_s": round(d.start_s, 3),
        "end_s": round(d.end_s, 3),
        "source": d.source,
        "matched": d.matched,
        "text": d.text,
        "score": d.score,
        "mode": d.mode,
        "rules_version": d.details.get("rules_version", ""),
    }


def evaluate_items(
    rules: RuleSet,
    items: Sequence[LabelledItem],
    extra: Sequence[Callable[[Utterance], list[Detection]]] = (),
) -> EvalReport:
    """Precision and recall of `rules` (plus any `extra` detectors, e.g. the semantic stage) over
    labelled texts."""
    rep = EvalReport()
    cat_of = {r.id: r.category for r in rules.rules}

    def detect(utt: Utterance) -> list[Detection]:
        out = rules.detect(utt)
        for f in extra:
            out = out + f(utt)
        return out

    for idx, it in enumerate(items):
        start = it.start_s if it.start_s is not None else 0.0
        end = it.end_s if it.end_s is not None else 0.0
        utt = Utterance(idx, start, end, it.text, source=it.source)
        dets = [d for d in detect(utt) if it.scope is None or d.category in it.scope]
        cats = {d.category for d in dets}
        if not it.labels and it.scope is None:
            rep.clean_lines += 1
            rep.clean_alarmed += bool(dets)
        for c in it.labels & cats:
            rep.tp[c] += 1
        for c in it.labels - cats:
            rep.fn[c] += 1
            rep.misses.append((it.ref, c, it.text))
        for c in cats - it.labels:
            rep.fp[c] += 1
        for d in dets:
            rep.rule_hits[d.rule_id] += 1
            if cat_of.get(d.rule_id, d.category) in it.labels:
                rep.rule_right[d.rule_id] += 1
            else:
                rep.false_alarms.append((it.ref, d.rule_id, d.matched, it.text))
            rep.alerts.append(_alert(d))
    return rep


def load_transcript(path: Path) -> list[Utterance]:
    """Utterances of a transcript JSON: {"segments": [{"start_s", "end_s", "text", "words": [...]}]}."""
    d = json.loads(Path(path).read_text(encoding="utf-8"))
    out: list[Utterance] = []
    for i, seg in enumerate(d["segments"]):
        words = tuple(
            Word(w["text"], float(w["start_s"]), float(w["end_s"]), float(w.get("probability", 1.0)))
            for w in seg.get("words", [])
        )
        text = "".join(w.text for w in words) if words else seg["text"]
        out.append(
            Utterance(
                i,
                float(seg["start_s"]),
                float(seg["end_s"]),
                text,
                words,
                source=seg.get("source", "speech"),
                raw_text=seg.get("text", text),
            )
        )
    return out


def evaluate_transcript(
    rules: RuleSet,
    utterances: Sequence[Utterance],
    truth: Path,
    slack_s: float = 2.0,
    half: Half | None = None,
    extra: Sequence[Callable[[Utterance], list[Detection]]] = (),
) -> EvalReport:
    """Detections on a transcript scored against a broadcast's spans (tools/score.py semantics).

    With `half`, only that half's spans are scored; a detection over a span of the other half is
    left out, and one over no span counts against the half of the nearest span.
    """
    gt = json.loads(Path(truth).read_text(encoding="utf-8"))
    all_spans = list(gt["spans"])
    stem = Path(truth).stem

    def half_of(si: int) -> Half:
        return split_of(str(all_spans[si].get("id") or f"{stem}#speech{si}"))

    keep = [si for si in range(len(all_spans)) if half is None or half_of(si) == half]
    dets: list[Detection] = []
    for u in utterances:
        dets.extend(rules.detect(u))
        for f in extra:
            dets.extend(f(u))

    def overlaps(d: Detection, sp: dict[str, Any]) -> bool:
        return bool(d.start_s <= sp["end_s"] + slack_s and d.end_s >= sp["start_s"] - slack_s)

    def right_for(d: Detection) -> list[int]:
        return [si for si, sp in enumerate(all_spans) if d.category in sp["labels"] and overlaps(d, sp)]

    def owner(d: Detection) -> Half | None:
        """The half a detection belongs to: of the spans it is right for, else of the nearest span."""
        right = right_for(d)
        if right:
            halves = {half_of(si) for si in right}
            return half if half in halves else next(iter(halves))
        if not all_spans:
            return None
        mid = (d.start_s + d.end_s) / 2
        near = min(
            range(len(all_spans)),
            key=lambda si: (
                0.0
                if all_spans[si]["start_s"] <= mid <= all_spans[si]["end_s"]
                else min(abs(all_spans[si]["start_s"] - mid), abs(all_spans[si]["end_s"] - mid))
            ),
        )
        return half_of(near)

    if half is not None:
        dets = [d for d in dets if owner(d) == half]
    spans = [all_spans[si] for si in keep]
    rep = EvalReport()
    rep.alerts = [_alert(d) for d in dets]
    used: set[int] = set()
    wrong = [i for i, d in enumerate(dets) if not right_for(d)]
    for si, sp in zip(keep, spans, strict=True):
        cats_here = _labels(sp["labels"])
        if not cats_here:
            rep.clean_lines += 1
            rep.clean_alarmed += any(
                dets[i].start_s <= sp["end_s"] and dets[i].end_s >= sp["start_s"] for i in wrong
            )
        for cat in cats_here:
            hit = [i for i, d in enumerate(dets) if d.category == cat and overlaps(d, sp)]
            if hit:
                rep.tp[cat] += 1
                used.update(hit)
            else:
                rep.fn[cat] += 1
                rep.misses.append((f"{Path(truth).name}#{si}", cat, sp["text"]))
    for i, d in enumerate(dets):
        rep.rule_hits[d.rule_id] += 1
        if i in used or i not in wrong:
            rep.rule_right[d.rule_id] += 1
        else:
            rep.fp[d.category] += 1
            rep.false_alarms.append((f"{d.start_s:.1f}s", d.rule_id, d.matched, d.text))
    return rep
