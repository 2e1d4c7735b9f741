"""The rule engine: compiled rule packs matched against utterances.

`RuleSet.load(dirs)` validates and layers the packs (see `detectors.rules`) and compiles every literal
term into shared Aho-Corasick automata, so that the cost of matching one utterance depends on its
length and on the terms it actually contains, not on the number of rules:

- a character automaton over normalized text (all terms, exemptions, and the literals of regexes:
  `detectors.rules.required_literal_groups` gives the sets of which every match holds one literal
  each; a regex is looked up through its rarest set, runs only when its sets are present, and a rule
  that only its regexes propose becomes a candidate only when one of them matches);
- a pinyin automaton over the pinyin code string (terms in pinyin or fuzzy mode: homophones);
- syllable bigrams (keys of the pinyin automaton too, one walk a line) that propose candidate
  windows for fuzzy terms; rapidfuzz compares only those windows, on Latin toneless pinyin.

Only rules with a candidate hit are then evaluated: proximity pairs, AND (`require`), NOT (`unless`),
exemption phrases that overlap the hit, and negation cues shortly before it in the same clause.

Scores: an exact match scores 100, a homophone (pinyin) match 95, a fuzzy match its pinyin
similarity (at most 94). A rule fires when a hit's score reaches its threshold.

Concurrency: a `RuleSet` is immutable after `load`; `detect` and `explain` keep their state on the
stack and may run from any number of threads. `RuleHolder` swaps whole sets under a lock; readers
take the reference once per utterance and never see a half-loaded set.
"""

from __future__ import annotations

import functools
import logging
import math
import operator
import os
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ahocorasick
from rapidfuzz.distance import Indel

from asr.types import Utterance
from detectors.base import DetectionContext, Detector, PhraseTable
from detectors.config import DEFAULT_RULES_DIR, RulesDetectorConfig
from detectors.laws import DEFAULT_LAWS
from detectors.lexicons import lexicon_dirs
from detectors.normalize import (
    Normalized,
    code_syllables,
    display,
    normalize,
    pinyin_codes,
    pinyin_display,
    pinyin_latin,
)
from detectors.rules import (
    CleanPhrase,
    EffectiveRule,
    RulePackError,
    TermSpec,
    compile_expanded,
    expand_macros,
    expand_term,
    load_rules,
    pack_files,
    required_literal_groups,
    required_literals,
)
from detectors.types import Detection

__all__ = [
    "DEFAULT_LINE_BUDGET_S",
    "MATCH_STATS",
    "ExplainHit",
    "Explanation",
    "Hit",
    "MatchStats",
    "Rule",
    "RuleHolder",
    "RuleSet",
    "RulesDetector",
]

logger = logging.getLogger(__name__)

PINYIN_SCORE = 95.0
FUZZY_MAX = 94.0
MIN_PINYIN_CHARS = 3  # shorter terms match homophones only when the term itself says mode: pinyin
MIN_FUZZY_CHARS = 4
MIN_FUZZY_LATIN = 8
FUZZY_INDEL_CHARS = 6  # terms at least this long may match with one syllable more or fewer
_SHAPES_SHORT = ((0, 0),)
_SHAPES_LONG = ((0, 0), (0, -1), (0, 1), (1, -1), (-1, 1))

# Matching one line may take at most this long; past it the remaining rules are skipped for that line
# (logged and counted in MATCH_STATS). The check runs between rules: Python's `re` cannot be
# interrupted mid-match, which is why `detectors.rules.regex_problem` refuses slow regexes up front.
DEFAULT_LINE_BUDGET_S = 1.0  # wall seconds; see RulesDetectorConfig.line_budget_ms


class MatchStats:
    """Process-wide counters of lines whose matching ran past the budget (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.lines_over_budget = 0
        self.rules_skipped = 0
        self.last_over_budget_ts: float | None = None
        self.last_over_budget_text: str | None = None

    def record(self, text: str, skipped: int) -> None:
        with self._lock:
            self.lines_over_budget += 1
            self.rules_skipped += skipped
            self.last_over_budget_ts = time.time()
            self.last_over_budget_text = text[:80]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "lines_over_budget": self.lines_over_budget,
                "rules_skipped": self.rules_skipped,
                "last_over_budget_ts": self.last_over_budget_ts,
                "last_over_budget_text": self.last_over_budget_text,
            }


MATCH_STATS = MatchStats()


@dataclass(frozen=True, slots=True)
class Rule:
    """An effective rule (after defaults and overrides), as shown to tuners."""

    id: str
    category: str
    code: str
    severity: str
    law: str
    description: str
    tags: tuple[str, ...]
    enabled: bool
    mode: str
    threshold: float
    sources: tuple[str, ...]
    pack: str
    path: Path
    line: int
    should_flag: tuple[str, ...]
    should_not_flag: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Hit:
    """One match of one rule in normalized text (offsets are normalized, then original)."""

    rule_id: str
    start: int
    end: int
    orig_start: int
    orig_end: int
    matched: str
    score: float
    mode: str
    pattern: str
    reason: str = ""  # why it was silenced (exempted hits only)


@dataclass(frozen=True, slots=True)
class ExplainHit:
    rule_id: str
    category: str
    code: str
    severity: str
    matched: str
    normalized: str
    score: float
    mode: str
    pattern: str
    reason: str


@dataclass(frozen=True, slots=True)
class Explanation:
    """What `livewatch rules explain` shows."""

    text: str
    steps: tuple[tuple[str, str], ...]
    normalized: str
    pinyin: str
    hits: tuple[ExplainHit, ...]
    exempted: tuple[ExplainHit, ...]
    version: str


# ---------------------------------------------------------------- compiled form


_Occ = tuple[int, int, float, str]  # an occurrence of an atom: start, end, score, mode
# a rule's match before it becomes a Hit: start, end, score, mode, pattern, starts of the parts a
# negation may precede
_Raw = tuple[int, int, float, str, str, tuple[int, ...]]


@dataclass(slots=True)
class _Atom:
    """A literal term in one rule, with its matching mode."""

    text: str  # normalized
    codes: str  # pinyin codes
    latin: str
    mode: str  # exact | pinyin | fuzzy (already degraded for short terms)
    two_cjk: bool = False  # two Chinese characters: an occurrence read across a word boundary is none


@dataclass(slots=True)
class _Near:
    a: frozenset[int]
    b: frozenset[int]
    within: int
    ordered: bool
    label: str


@dataclass(slots=True)
class _Compiled:
    rule: Rule
    hit_atoms: frozenset[int]
    near: list[_Near]
    require: list[frozenset[int]]
    unless: tuple[str, ...]  # normalized phrases, looked for only when the rule has a hit
    exempt: tuple[str, ...]
    exempt_regex: list[re.Pattern[str]]
    regexes: list[tuple[str, re.Pattern[str]]]
    # per regex: literal sets each of which every match contains one of (a conjunction; empty when
    # none is known or the regex ignores case: the regex then runs whenever its rule is a candidate)
    regex_groups: list[tuple[frozenset[str], ...]]
    negation_cues: tuple[str, ...]
    negation_window: int
    negation_ignore: tuple[str, ...]
    threshold: float
    sources: frozenset[str]
    # the phrases above, as sets: a rule looks for them only when the automaton saw one in the text
    unless_set: frozenset[str] = frozenset()
    exempt_set: frozenset[str] = frozenset()
    cue_set: frozenset[str] = frozenset()
    # phrase -> its place in `unless` / `exempt`: the first one present in a text, without a search
    unless_rank: dict[str, int] | None = None
    exempt_rank: dict[str, int] | None = None
    # per regex, as `_evaluate` runs it: (source, regex, id in the regex table or -1, the literal sets
    # still to check when the id was reached in the text: all but the first; all of them for -1)
    regex_plan: tuple[tuple[str, re.Pattern[str], int, tuple[frozenset[str], ...]], ...] = ()
    # negation cue -> the ignore phrases holding it, with where it first occurs in them
    ignore_by_cue: dict[str, tuple[tuple[str, int], ...]] | None = None


class _Scratch:
    """Per-call matching state."""

    __slots__ = (
        "bounds", "cues", "exact", "found", "fuzzy", "norm", "occ", "phrases", "pinyin", "present", "reached",
        "regex_rules",
    )

    def __init__(self, norm: Normalized) -> None:
        self.norm = norm
        self.exact: dict[str, list[_Occ]] = {}  # literal -> its occurrences (score 100, "exact")
        self.pinyin: dict[str, list[tuple[int, int]]] = {}
        self.fuzzy: dict[int, list[_Occ]] = {}
        self.found: set[int] = set()  # atoms with at least one occurrence in this text
        self.occ: dict[int, list[_Occ]] = {}
        self.regex_rules: set[int] = set()
        self.reached: set[int] = set()  # regexes of the table with a literal of their first set present
        # regex literals that occur anywhere in the text
        self.present: set[str] = {""}  # "" is in every text
        # unless/exempt phrases and negation cues that occur anywhere in the text (apart from `present`:
        # a rule's phrase sets are probed only with the few phrases a line holds)
        self.phrases: set[str] = {""}
        self.cues: dict[tuple[str, ...], tuple[str, ...]] = {}  # a rule's cues -> those present
        self.bounds: _WordBounds | None = None  # word boundaries, segmented on first need


class _RuleTables:
    """The compiled form of a rule set: atoms (literal terms per matching mode), per-rule compiled
    conditions, and the shared automata over characters, pinyin codes and syllable bigrams.
    `RuleSet` adds matching, detection and explanation on top; the tables never change after
    construction."""

    def __init__(
        self,
        effective: Sequence[EffectiveRule],
        clean: Sequence[CleanPhrase],
        version: str,
        files: Sequence[Path],
        dirs: Sequence[Path],
    ) -> None:
        self.version = version
        self.files = tuple(files)
        self.dirs = tuple(Path(d) for d in dirs)
        self.clean = tuple(clean)
        self.rules: list[Rule] = []
        self._atoms: list[_Atom] = []
        self._atom_index: dict[tuple[str, str], int] = {}
        self._compiled: list[_Compiled] = []
        self._always: list[int] = []  # rules whose regexes have no literal trigger
        self._regex_trigger: dict[str, set[int]] = defaultdict(set)
        self._regex_lits: set[str] = set()  # every literal of every regex's literal sets (enabled rules)
        # regexes with literal sets (enabled rules): (rule, regex, sets), and literal -> those whose
        # first set holds it; the rule's other regexes run whenever the rule is triggered
        self._regex_table: list[tuple[int, int, re.Pattern[str], tuple[frozenset[str], ...]]] = []
        self._regex_check: dict[str, list[int]] = defaultdict(list)  # literal -> regexes filed under it
        # per regex of the table: (rule, regex, literal sets but the first, gated: a tracked rule not in
        # `_always`, whose regexes run only when `_Scratch.regex_rules` holds it)
        self._regex_entries: list[tuple[int, re.Pattern[str], tuple[frozenset[str], ...], bool]] = []
        self._loose_regexes: dict[int, tuple[re.Pattern[str], ...]] = {}
        self._fuzzy_atoms: list[int] = []
        # atom -> enabled rules for which it is a hit term / a side of a proximity pair (ri, pair, side)
        self._hit_build: dict[int, list[int]] = defaultdict(list)
        self._near_build: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
        self._phrases: set[str] = set()  # unless/exempt phrases and negation cues of every rule
        self._cue_tuples: dict[tuple[str, ...], tuple[str, ...]] = {}  # one object per distinct cue list
        for eff in effective:
            self._compile(eff)
        self._by_id = {r.id: r for r in self.rules}
        self._always_set = frozenset(self._always)
        self._hit_roles: dict[int, tuple[int, ...]] = {k: tuple(v) for k, v in self._hit_build.items()}
        self._near_roles: dict[int, tuple[tuple[int, int, int], ...]] = {
            k: tuple(v) for k, v in self._near_build.items()
        }
        # proximity pairs numbered: pair -> its rule, and per atom the pairs it is side a / side b of
        pair_id: dict[tuple[int, int], int] = {}
        sides: tuple[dict[int, set[int]], dict[int, set[int]]] = (defaultdict(set), defaultdict(set))
        for ai, nr in self._near_roles.items():
            for ri, k, side in nr:
                sides[side][ai].add(pair_id.setdefault((ri, k), len(pair_id)))
        self._pair_rule: list[int] = [ri for ri, _k in pair_id]
        # all three, in one lookup per atom found: (hit roles, pairs as side a, pairs as side b)
        self._roles: dict[int, tuple[tuple[int, ...], frozenset[int], frozenset[int]]] = {
            ai: (self._hit_roles.get(ai, ()), frozenset(sides[0].get(ai, ())), frozenset(sides[1].get(ai, ())))
            for ai in {*self._hit_roles, *self._near_roles}
        }
        del self._hit_build, self._near_build
        self._atoms_by_text: dict[str, list[int]] = defaultdict(list)
        self._atoms_by_codes: dict[str, list[int]] = defaultdict(list)
        for ai, atom in enumerate(self._atoms):
            self._atoms_by_text[atom.text].append(ai)
            if atom.mode != "exact":
                self._atoms_by_codes[atom.codes].append(ai)
        if any(len(a.text) == 2 and _is_cjk(a.text) for a in self._atoms):
            _word_tags()  # load the word segmenter and its tags now, not inside the first line's time budget
        self._phrases.discard("")
        self._index_regexes()
        anywhere = set(self._tracked_trigger) | self._regex_lits | self._phrases
        char_keys = anywhere | set(self._atoms_by_text)
        self._char_ac = self._automaton(
            blank=("", 2, False, (), frozenset(), (), False, None),
            keys={
                k: (
                    k,
                    len(k),
                    _needs_bound(k),
                    tuple(self._atoms_by_text.get(k, ())),
                    frozenset(self._tracked_trigger.get(k, ())),
                    tuple(self._regex_check.get(k, ())),
                    (_LITERAL if k in self._regex_lits else 0) | (_PHRASE if k in self._phrases else 0),
                    self._merged_roles(self._atoms_by_text.get(k, ())),
                )
                for k in char_keys
            }
        )
        # Fuzzy anchors: disjoint syllable bigrams (0-1, 2-3, ... and the last one), so that a term
        # with one wrong syllable still shares an anchor with the text.
        bigrams: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for ai in self._fuzzy_atoms:
            atom = self._atoms[ai]
            L = len(atom.codes)
            offsets = sorted({*range(0, L - 1, 2), L - 2})
            shapes = _SHAPES_LONG if L >= FUZZY_INDEL_CHARS else _SHAPES_SHORT
            entry = (atom.latin, atom.codes, max(1, L // 4), shapes)
            for k in offsets:
                # the syllables outside this anchor, relative to the anchor: a cheap mismatch count
                rest = tuple((p - k, atom.codes[p]) for p in range(L) if p not in (k, k + 1))
                bigrams[atom.codes[k : k + 2]].append((ai, k, L, *entry, rest))
        # One automaton over the pinyin codes: homophones of the terms (key, length, atoms, their roles)
        # and the fuzzy anchors (the anchor's probes, or None), walked once per line.
        probes = {k: _fuzzy_probes(tuple(v)) for k, v in bigrams.items()}
        self._py_ac = self._automaton(
            blank=("", 2, (), None, None),
            keys={
                k: (
                    k,
                    len(k),
                    tuple(self._atoms_by_codes.get(k, ())),
                    self._merged_roles(self._atoms_by_codes.get(k, ())),
                    probes.get(k),
                )
                for k in {*self._atoms_by_codes, *probes}
            },
        )

    def _merged_roles(
        self, atoms: Iterable[int]
    ) -> tuple[tuple[int, ...], frozenset[int], frozenset[int]] | None:
        """The roles (`_roles`) of all these atoms together, kept in the automaton value of the key that
        finds them: the scan proposes their rules from the value it already holds, without a lookup
        per atom in the large `_roles` table. None when none of them has a role."""
        hr: set[int] = set()
        na: set[int] = set()
        nb: set[int] = set()
        for ai in atoms:
            three = self._roles.get(ai)
            if three is not None:
                hr.update(three[0])
                na |= three[1]
                nb |= three[2]
        if not (hr or na or nb):
            return None
        return tuple(sorted(hr)), frozenset(na), frozenset(nb)

    def _index_regexes(self) -> None:
        """File each regex with literal sets under the set a text is least likely to hold (by the
        frequency of its words and characters in the segmenter's dictionary), and keep the sets worth
        checking before the regex runs. A rule whose regexes may run without their own sets present
        (one ignores case or has no set) or whose trigger literals must end at a Latin word boundary
        is `tracked`: for it, `_Scratch.regex_rules` records whether a trigger of its was seen, as
        `_evaluate` requires; for every other rule a regex whose sets are all present is triggered."""
        estimate = _literal_frequency()
        table: list[tuple[int, int, re.Pattern[str], tuple[frozenset[str], ...]]] = []
        gid_of: dict[tuple[int, int], int] = {}
        for ri, j, rx, groups in self._regex_table:
            weighed = sorted(
                ((sum(estimate(lit) for lit in g), k, g) for k, g in enumerate(groups)),
                key=lambda x: (x[0], x[1]),
            )
            keep = tuple(g for w, k, g in weighed if k == weighed[0][1] or w <= REGEX_SET_MAX_FREQ)
            gid = len(table)
            table.append((ri, j, rx, keep))
            self._compiled[ri].regex_groups[j] = keep  # what _evaluate checks: the literals looked for
            gid_of[ri, j] = gid
            for lit in keep[0]:
                self._regex_check[lit].append(gid)
            for g in keep:
                self._regex_lits.update(g)
        self._regex_table = table
        tracked = set(self._loose_regexes)
        for lit, rules in self._regex_trigger.items():
            if _needs_bound(lit):
                tracked |= rules
        self._tracked = frozenset(tracked)
        self._tracked_trigger: dict[str, frozenset[int]] = {}
        for lit, rules in self._regex_trigger.items():
            mine = frozenset(rules & tracked)
            if mine:
                self._tracked_trigger[lit] = mine
        gated = tracked - self._always_set
        self._regex_entries = [(ri, rx, keep[1:], ri in gated) for ri, _j, rx, keep in table]
        for ri, comp in enumerate(self._compiled):
            plan = []
            for j, ((src, rx), groups) in enumerate(zip(comp.regexes, comp.regex_groups, strict=True)):
                gid = gid_of.get((ri, j), -1)
                if gid >= 0 and "" not in groups[0]:  # the automaton reports no empty literal
                    plan.append((src, rx, gid, groups[1:]))
                else:
                    plan.append((src, rx, -1, groups))
            comp.regex_plan = tuple(plan)

    @staticmethod
    def _automaton(keys: dict[str, Any], blank: Any) -> ahocorasick.Automaton | None:
        """An automaton over `keys` (key -> value).

        pyahocorasick finds a node's child by a linear scan of its children in insertion order. At
        the root these are all the characters keys start with (thousands with large lexicons), and
        the root is where matching falls back to on most characters of a text. So the root's
        children are made in the order of the characters' frequency in Chinese (jieba's dictionary),
        and every character that only occurs inside keys gets a root child too (a key ending in
        U+FFFF, which normalized text never holds: `blank` is its value, never reported), so that a
        common character is found after a short scan. The keys and what they match are unchanged.
        """
        items = [(k, v) for k, v in keys.items() if k]
        if not items:
            return None
        rank = _char_rank()
        if rank is None:  # no dictionary at hand: the characters most keys start with first
            rank = defaultdict(int)
            for k, _ in items:
                rank[k[0]] += 1
        chars = {c for k, _ in items for c in k}
        firsts = {k[0] for k, _ in items}
        if _NEVER not in chars:
            items += [(c + _NEVER, blank) for c in chars - firsts]
        # every node's children in the order of their characters' frequency
        items.sort(key=lambda kv: ([-rank.get(c, 0) for c in kv[0]], kv[0]))
        ac = ahocorasick.Automaton()
        for k, v in items:
            ac.add_word(k, v)
        ac.make_automaton()
        return ac

    def _atoms_of(self, terms: Iterable[str | TermSpec], rule_mode: str) -> list[int]:
        out: dict[int, None] = {}  # ordered set: lexicon groups hold thousands of terms
        for term in terms:
            explicit = isinstance(term, TermSpec)
            raw, mode = (term.term, term.mode) if isinstance(term, TermSpec) else (term, rule_mode)
            for t in expand_term(raw):
                out.setdefault(self._atom(t, mode, explicit), None)
        return list(out)

    def _atom(self, raw: str, mode: str, explicit: bool = False) -> int:
        text, codes, latin = _term_forms(raw)
        if mode != "exact" and (len(text) < 2 or codes == text):
            mode = "exact"  # one character or no Chinese: homophones would be noise
        if mode != "exact" and len(text) < MIN_PINYIN_CHARS and not explicit:
            # Two-character homophones are everywhere (精仿/精纺, 顶级/酊剂): only when a term asks.
            mode = "exact"
        if mode == "fuzzy" and (len(text) < MIN_FUZZY_CHARS or len(latin) < MIN_FUZZY_LATIN):
            mode = "pinyin"
        key = (text, mode)
        idx = self._atom_index.get(key)
        if idx is None:
            idx = len(self._atoms)
            self._atoms.append(_Atom(text, codes, latin, mode, len(text) == 2 and _is_cjk(text)))
            self._atom_index[key] = idx
            if mode == "fuzzy":
                self._fuzzy_atoms.append(idx)
        return idx

    def _compile(self, eff: EffectiveRule) -> None:
        spec = eff.spec
        rule = Rule(
            id=spec.id,
            category=eff.category,
            code=spec.code,
            severity=eff.severity,
            law=eff.law,
            description=spec.description,
            tags=eff.tags,
            enabled=eff.enabled,
            mode=eff.mode,
            threshold=eff.threshold,
            sources=eff.sources,
            pack=eff.source.pack,
            path=eff.source.path,
            line=eff.source.line,
            should_flag=tuple(spec.should_flag),
            should_not_flag=tuple(spec.should_not_flag),
        )
        ri = len(self.rules)
        self.rules.append(rule)
        mode = eff.mode
        hit_atoms = self._atoms_of(spec.terms, mode)
        near = []
        for n in spec.near:
            a = self._atoms_of(n.a, mode)
            b = self._atoms_of(n.b, mode)
            label = f"near({'|'.join(self._atoms[i].text for i in a)} ~{n.within}~ {'|'.join(self._atoms[i].text for i in b)})"
            near.append(_Near(frozenset(a), frozenset(b), n.within, n.ordered, label))
        require = [frozenset(self._atoms_of(group, mode)) for group in spec.require]
        unless = tuple(dict.fromkeys(normalize(t).text for u in eff.unless for t in expand_term(u)))
        exempt = tuple(dict.fromkeys(normalize(t).text for x in eff.exempt for t in expand_term(x)))
        regexes = [(src, compile_expanded(expand_macros(src))) for src in spec.regex]
        regex_lits = [required_literals(src) for src, _ in regexes]
        regex_groups = [
            tuple(frozenset(g) for g in required_literal_groups(src)) if _case_sensitive(rx) else ()
            for src, rx in regexes
        ]
        exempt_regex = [compile_expanded(expand_macros(src)) for src in spec.exempt_regex]
        neg = eff.negation
        comp = _Compiled(
            rule=rule,
            hit_atoms=frozenset(hit_atoms),
            near=near,
            require=require,
            unless=unless,
            exempt=exempt,
            exempt_regex=exempt_regex,
            regexes=regexes,
            regex_groups=regex_groups,
            negation_cues=tuple(sorted(set(neg.cues), key=len, reverse=True)) if neg else (),
            negation_window=neg.window if neg else 0,
            negation_ignore=tuple(neg.ignore) if neg else (),
            threshold=eff.threshold,
            sources=frozenset(eff.sources),
        )
        # an empty phrase would be everywhere: such a rule keeps looking for its phrases on every hit
        comp.unless_set = frozenset(comp.unless) if all(comp.unless) else _EVERYWHERE
        comp.exempt_set = frozenset(comp.exempt) if all(comp.exempt) else _EVERYWHERE
        comp.cue_set = frozenset(comp.negation_cues) if all(comp.negation_cues) else _EVERYWHERE
        if comp.unless_set is not _EVERYWHERE:
            comp.unless_rank = {p: k for k, p in enumerate(comp.unless)}
        if comp.exempt_set is not _EVERYWHERE:
            comp.exempt_rank = {p: k for k, p in enumerate(comp.exempt)}
        comp.negation_cues = self._cue_tuples.setdefault(comp.negation_cues, comp.negation_cues)
        comp.ignore_by_cue = {
            cue: tuple((ig, j) for ig, j in ((ig, ig.find(cue)) for ig in comp.negation_ignore) if j >= 0)
            for cue in comp.negation_cues
        }
        for phrase in (*comp.unless, *comp.exempt, *comp.negation_cues):
            self._phrases.add(phrase)
        self._compiled.append(comp)
        if not eff.enabled:
            return
        for ai in hit_atoms:
            self._hit_build[ai].append(ri)
        for k, nr in enumerate(near):
            for side, atoms in ((0, nr.a), (1, nr.b)):
                for ai in atoms:
                    self._near_build[ai].append((ri, k, side))
        always = False
        loose: list[re.Pattern[str]] = []
        for j, ((_src, rx), lits, groups) in enumerate(zip(regexes, regex_lits, regex_groups, strict=True)):
            if groups:
                self._regex_table.append((ri, j, rx, groups))
            else:
                loose.append(rx)
            if not lits:
                always = True
                continue
            for lit in lits:
                self._regex_trigger[lit].add(ri)
        if always:
            self._always.append(ri)
        if loose:
            self._loose_regexes[ri] = tuple(loose)

    # ------------------------------------------------------------ matching

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def phrase_table(self) -> PhraseTable:
        """Every enabled rule's should_flag lines, and the packs' `clean` lines (nothing may flag)."""
        flag: list[str] = []
        for r in self.rules:
            if r.enabled:
                flag.extend(r.should_flag)
        return PhraseTable(
            should_flag=tuple(dict.fromkeys(flag)),
            should_not_flag=tuple(dict.fromkeys(c.text for c in self.clean)),
        )


class _AtomMatching(_RuleTables):
    """Where an atom occurs in a line: exact spans, same-pinyin spans and near-homophone (fuzzy) spans.

    The fuzzy stage compares syllable codes around each anchor (a syllable bigram) the code automaton
    finds; `_occ` gathers an atom's occurrences of every mode once per line (cached in `_Scratch`).
    `_scan` runs the automata over a line and proposes the candidate rules. Stateless apart from the
    tables; `RuleSet` builds rule hits from these occurrences."""

    def _fuzzy_scan(self, sc: _Scratch, codes: str, anchors: list[tuple[int, Any]]) -> None:
        """Fuzzy occurrences around the anchors the code automaton reported: (end, the anchor's probes)."""
        n = len(codes)
        lat: list[str] = []  # per character: its Latin syllable, made with the first window compared
        tried: set[int] | None = None
        similarity = Indel.normalized_similarity
        for end, probes_of in anchors:
            a = end - 1  # first character of the anchor (end is its last)
            entries, probes, always = probes_of
            # Entries that can pass the mismatch count below: each same-length entry is filed under
            # max_diff + 1 of its syllables outside the anchor, one of which must then agree.
            pick: list[int] | tuple[int, ...] = always
            for rel, by_code in probes:
                p = a + rel
                if 0 <= p < n:
                    got = by_code.get(codes[p])
                    if got:
                        pick = [*pick, *got]
            if not pick:
                continue
            if len(pick) > 1:
                pick = sorted(set(pick))
            for ei in pick:
                ai, off, L, latin, term_codes, max_diff, shapes, rest = entries[ei]
                s0 = a - off
                if len(shapes) == 1:
                    # Same length only: count the syllables that differ outside the anchor.
                    if s0 < 0 or s0 + L > n:
                        continue
                    miss = 0
                    for rel, c in rest:
                        if codes[a + rel] != c:
                            miss += 1
                            if miss > max_diff:
                                break
                    if miss == 0 or miss > max_diff:
                        continue  # identical codes are a homophone: the pinyin automaton has it
                tag = ai * 65536 + s0
                if tried is None:
                    tried = {tag}
                    syl = code_syllables()
                    lat = [syl.get(c, c) for c in codes]
                elif tag in tried:
                    continue
                else:
                    tried.add(tag)
                best = 0.0
                span = (0, 0)
                for ds, dl in shapes:
                    st = s0 + ds
                    e = st + L + dl
                    if st < 0 or e > n or e - st < 2:
                        continue
                    if dl == 0 and len(shapes) > 1:
                        window = codes[st:e]
                        if window == term_codes or sum(map(str.__ne__, window, term_codes)) > max_diff:
                            continue
                    score = similarity(latin, "".join(lat[st:e])) * 100.0
                    if score > best:
                        best, span = score, (st, e)
                if best >= 60.0:
                    sc.fuzzy.setdefault(ai, []).append((span[0], span[1], min(best, FUZZY_MAX), "fuzzy"))
                    sc.found.add(ai)

    def _occ(self, sc: _Scratch, ai: int) -> list[_Occ]:
        """The atom's occurrences in the text: (start, end, score, mode)."""
        cached = sc.occ.get(ai)
        if cached is not None:
            return cached
        atom = self._atoms[ai]
        exact = sc.exact.get(atom.text)
        if not exact:
            out: list[_Occ] = []
        elif atom.two_cjk:
            out = [o for o in exact if not _straddles(sc, o[0], o[1])]
        elif atom.mode == "exact":
            sc.occ[ai] = exact  # the scan's own list: nothing appends to it any more
            return exact
        else:
            out = exact.copy()
        if atom.mode != "exact":
            seen = {(o[0], o[1]) for o in out}
            for s, e in sc.pinyin.get(atom.codes, ()):
                if (s, e) not in seen:
                    out.append((s, e, PINYIN_SCORE, "pinyin"))
                    seen.add((s, e))
            if atom.mode == "fuzzy":
                for o in sc.fuzzy.get(ai, ()):
                    if not any(o[0] < e and s < o[1] for s, e in seen):
                        out.append(o)
        sc.occ[ai] = out
        return out

    def _scan(self, norm: Normalized) -> tuple[_Scratch, set[int]]:
        """Find every atom and regex trigger in the text; the candidates are the rules that can produce
        a hit: a hit term found, both sides of a proximity pair found, or a regex triggered."""
        sc = _Scratch(norm)
        text = norm.text
        found = sc.found
        regex_rules = sc.regex_rules
        reached = sc.reached
        candidates: set[int] = set()
        side_a: set[int] = set()  # proximity pairs with a term of each side found
        side_b: set[int] = set()
        got: list[tuple[Any, Any, Any]] = []  # (hit rules, pair sides a, b) of each atom found
        if self._char_ac is not None and text:
            exact = sc.exact
            present = sc.present
            phrases = sc.phrases
            for end, (key, klen, bound, atoms, trig, checks, anywhere, roles) in self._char_ac.iter(text):
                if anywhere:  # regex literals and phrases are looked for without word bounds
                    if anywhere != _PHRASE:
                        present.add(key)
                        if checks:
                            reached.update(checks)
                    if anywhere != _LITERAL:
                        phrases.add(key)
                if atoms or trig:
                    start = end - klen + 1
                    if bound and not _bounded(text, start, end + 1, key):
                        continue
                    if atoms:
                        spans = exact.get(key)
                        if spans is None:
                            exact[key] = [(start, end + 1, 100.0, "exact")]
                        else:
                            spans.append((start, end + 1, 100.0, "exact"))
                        found.update(atoms)
                        if roles is not None:
                            got.append(roles)
                    if trig:
                        regex_rules |= trig
        codes = pinyin_codes(text)
        anchors: list[tuple[int, Any]] = []
        if self._py_ac is not None and text:
            pinyin = sc.pinyin
            for end, (key, klen, atoms, roles, probes_of) in self._py_ac.iter(codes):
                if probes_of is not None:
                    anchors.append((end, probes_of))
                    if not atoms:
                        continue
                start = end - klen + 1
                if (text[start].isascii() or text[end].isascii()) and not _bounded(
                    text, start, end + 1, text[start : end + 1]
                ):
                    continue  # only a Latin letter or digit at either end can continue a Latin word
                pinyin.setdefault(key, []).append((start, end + 1))
                found.update(atoms)
                if roles is not None:
                    got.append(roles)
        if anchors:
            self._fuzzy_scan(sc, codes, anchors)
            all_roles = self._roles
            for ai in sc.fuzzy:  # the atoms the fuzzy stage found
                three = all_roles.get(ai)
                if three is not None:
                    got.append(three)
        for hr, na, nb in got:  # the roles of every atom found: hit terms, proximity sides
            if hr:
                candidates.update(hr)
            if na:
                side_a |= na
            if nb:
                side_b |= nb
        if side_a and side_b:
            pair_rule = self._pair_rule
            for pid in side_a & side_b:
                candidates.add(pair_rule[pid])
        # A rule that only its regexes propose (one of their literals was found, or they have none) is a
        # candidate when one of the regexes its evaluation would run actually matches: one with literal
        # sets each present in the text (found through its first set), or one without (they run
        # whenever the rule is triggered). Else the evaluation would find nothing.
        if reached or self._always:
            present = sc.present
            entries = self._regex_entries
            for gid in reached:  # its first set is present: the literal that reached it
                ri, rx, rest, gated = entries[gid]
                if ri in candidates or (gated and ri not in regex_rules):
                    continue
                for g in rest:
                    if g.isdisjoint(present):
                        break
                else:
                    if rx.search(text) is not None:
                        candidates.add(ri)
            loose = self._loose_regexes
            for pending in (regex_rules, self._always):
                for ri in pending:
                    if ri in candidates:
                        continue
                    for rx in loose.get(ri, ()):
                        if rx.search(text) is not None:
                            candidates.add(ri)
                            break
        return sc, candidates


class RuleSet(_AtomMatching):
    """An immutable, compiled set of rules. Build with `RuleSet.load`.

    `line_budget_s` (None: no budget) bounds the matching of one line; `budget_clock` is its clock.
    """

    line_budget_s: float | None = DEFAULT_LINE_BUDGET_S
    budget_clock: Any = staticmethod(time.perf_counter)  # wall time: thread CPU clocks cost ~0.2 ms a read here

    # ------------------------------------------------------------ loading

    @classmethod
    def load(cls, dirs: Sequence[Path] | None = None) -> RuleSet:
        """Load, validate, layer and compile the packs of `dirs` (default: the shipped packs).

        Raises `RulePackError` (``path:line: field: reason``) on the first invalid pack.
        """
        dirs = [Path(d) for d in (dirs if dirs else [DEFAULT_RULES_DIR])]
        loaded = load_rules(dirs)
        rs = cls(loaded.rules, loaded.clean, loaded.version, loaded.files, dirs)
        logger.info(
            "loaded %s rules (%s enabled) from %s files, version %s",
            len(rs.rules),
            sum(r.enabled for r in rs.rules),
            len(rs.files),
            rs.version,
        )
        return rs

    # ------------------------------------------------------------ matching

    def _evaluate(
        self, ri: int, sc: _Scratch, source: str | None, firing_only: bool = False
    ) -> tuple[list[Hit], list[Hit]]:
        """The rule's (firing hits, silenced hits) in the scanned text (see `_raw_hits`)."""
        kept, silenced = self._raw_hits(ri, sc, source, firing_only)
        if not kept and not silenced:
            return [], []
        rid = self._compiled[ri].rule.id
        norm = sc.norm
        return [_hit(rid, norm, r, "") for r in kept], [_hit(rid, norm, r, why) for r, why in silenced]

    def _raw_hits(
        self, ri: int, sc: _Scratch, source: str | None, firing_only: bool = False
    ) -> tuple[list[_Raw], list[tuple[_Raw, str]]]:
        """The rule's firing matches and its silenced matches with the reason, in the scanned text, as
        raw tuples (start, end, score, mode, pattern, anchors). `firing_only` (what `detect` needs): a
        rule that does not fire returns no silenced matches either, so a rule silenced whole (unless,
        require) is settled before its matches are gathered."""
        comp = self._compiled[ri]
        rule = comp.rule
        if not rule.enabled or (source is not None and source not in comp.sources):
            return [], []
        norm = sc.norm
        text = norm.text
        thr = comp.threshold
        atoms = self._atoms
        occ = self._occ
        found = sc.found
        if firing_only:
            if comp.unless and not comp.unless_set.isdisjoint(sc.phrases):
                return [], []  # an unless phrase is in the text (see `_silenced_whole`)
            for group in comp.require:
                if not any(o[2] >= thr for ai in group & found for o in occ(sc, ai)):
                    return [], []
        # (start, end, score, mode, pattern, starts of the parts a negation may precede)
        raw: list[_Raw] = []
        if comp.hit_atoms:
            hit = comp.hit_atoms & found
            for ai in sorted(hit) if len(hit) > 1 else hit:
                for o in occ(sc, ai):
                    if o[2] >= thr:
                        raw.append((o[0], o[1], o[2], o[3], atoms[ai].text, (o[0],)))
        if comp.regex_plan and (ri not in self._tracked or ri in sc.regex_rules or ri in self._always_set):
            present = sc.present
            reached = sc.reached
            for src, rx, gid, groups in comp.regex_plan:
                if gid >= 0 and gid not in reached:
                    continue  # no literal of its first set in the text
                for g in groups:
                    if g.isdisjoint(present):
                        break  # a match would contain one literal of each set
                else:
                    for m in rx.finditer(text):
                        ms, me = m.span()
                        if me > ms:
                            raw.append((ms, me, 100.0, "regex", src, (ms,)))
        for nr in comp.near:
            a_found = nr.a & found
            if not a_found:
                continue
            b_found = nr.b & found
            if not b_found:
                continue
            a_occ = [(o, atoms[ai].text) for ai in sorted(a_found) for o in occ(sc, ai) if o[2] >= thr]
            if not a_occ:
                continue
            b_occ = [(o, atoms[ai].text) for ai in sorted(b_found) for o in occ(sc, ai) if o[2] >= thr]
            within = nr.within
            for oa, ta in a_occ:
                a_start, a_end, a_score, a_mode = oa
                for ob, tb in b_occ:
                    b_start, b_end, b_score, b_mode = ob
                    if a_start < b_end and b_start < a_end:
                        continue
                    if b_start >= a_end:
                        gap = b_start - a_end
                    elif nr.ordered:
                        continue
                    else:
                        gap = a_start - b_end
                    if gap <= within:
                        raw.append(
                            (
                                min(a_start, b_start),
                                max(a_end, b_end),
                                a_score if a_score <= b_score else b_score,
                                a_mode if a_score <= b_score else b_mode,
                                f"{ta} ~{within}~ {tb}",
                                (a_start, b_start),
                            )
                        )
        if not raw:
            return [], []
        if not firing_only:  # (with firing_only, a rule silenced whole returned above)
            silenced_whole = self._silenced_whole(comp, sc)
            if silenced_whole:
                return [], [(r, silenced_whole) for r in raw]
        present = sc.phrases
        # What may silence a match, looked up once for the rule: its exemption phrases the text holds
        # (in the rule's order; all of them when one is empty), the spans of its exemption regexes, its
        # negation cues the text holds.
        exempt = comp.exempt
        if exempt and comp.exempt_rank is not None:
            here = comp.exempt_set.intersection(present)
            exempt = tuple(sorted(here, key=comp.exempt_rank.__getitem__)) if len(here) > 1 else tuple(here)
        rx_spans: list[tuple[str, list[tuple[int, int]]]] = []
        for rx in comp.exempt_regex:
            spans = [m.span() for m in rx.finditer(text)]
            if spans:
                rx_spans.append((f"exempt: /{rx.pattern}/", spans))
        cues: tuple[str, ...] = ()
        if comp.negation_cues:
            got = sc.cues.get(comp.negation_cues)
            if got is None:
                got = sc.cues[comp.negation_cues] = (
                    () if comp.cue_set.isdisjoint(present) else tuple(c for c in comp.negation_cues if c in present)
                )
            cues = got
        if not (exempt or rx_spans or cues):
            return _dedupe(raw), []
        kept: list[_Raw] = []
        silenced: list[tuple[_Raw, str]] = []
        for r in raw:
            why = _exemption(comp, sc.norm, r[0], r[1], r[5], exempt, rx_spans, cues)
            if why:
                silenced.append((r, why))
            else:
                kept.append(r)
        if firing_only and not kept:
            return [], []
        return _dedupe(kept) if kept else kept, _dedupe_reasons(silenced) if silenced else silenced

    def _silenced_whole(self, comp: _Compiled, sc: _Scratch) -> str:
        """Why every match of the rule is silenced in this text (unless, require), or ""."""
        if comp.unless and not comp.unless_set.isdisjoint(sc.phrases):
            rank = comp.unless_rank
            if rank is not None:
                # a phrase is in the text exactly when the automaton reported it: the first present one
                phrase = min(comp.unless_set.intersection(sc.phrases), key=rank.__getitem__)
                return f"unless: {phrase}"
            for phrase in comp.unless:
                if phrase in sc.norm.text:
                    return f"unless: {phrase}"
        thr = comp.threshold
        for gi, group in enumerate(comp.require):
            if not any(o[2] >= thr for ai in group & sc.found for o in self._occ(sc, ai)):
                return f"require[{gi}]: none of {'|'.join(self._atoms[ai].text for ai in group)}"
        return ""

    def match(self, text: str, source: str | None = None) -> tuple[list[Hit], list[Hit], Normalized]:
        """All hits of enabled rules in `text`: (firing hits, silenced hits, normalized text)."""
        return self._match(text, source, False)

    def _match(self, text: str, source: str | None, firing_only: bool) -> tuple[list[Hit], list[Hit], Normalized]:
        """`match`; with `firing_only`, silenced hits only of the rules that fire (see `_raw_hits`)."""
        hits: list[Hit] = []
        silenced: list[Hit] = []
        norm, sc, order, deadline = self._start(text)
        for k, ri in enumerate(order):
            if deadline is not None and self.budget_clock() > deadline:
                self._over_budget(text, len(order) - k, len(order))
                break
            h, s = self._evaluate(ri, sc, source, True) if firing_only else self._evaluate(ri, sc, source)
            hits.extend(h)
            silenced.extend(s)
        return hits, silenced, norm

    def _start(self, text: str) -> tuple[Normalized, _Scratch, list[int], float | None]:
        """A line's matching begun: its normalized text, scan, candidate rules in order, deadline."""
        budget = self.line_budget_s
        deadline = self.budget_clock() + budget if budget else None
        norm = normalize(text)
        sc, candidates = self._scan(norm)
        return norm, sc, sorted(candidates), deadline

    def _over_budget(self, text: str, skipped: int, total: int) -> None:
        budget = self.line_budget_s
        MATCH_STATS.record(text, skipped)
        logger.error(
            "LINE OVER BUDGET: matching took more than %.0f ms; %d of %d candidate rules "
            "skipped for this line: %.80s",
            budget * 1000 if budget else 0,
            skipped,
            total,
            text,
        )

    def detect(self, utt: Utterance) -> list[Detection]:
        """Detections of this rule set in one utterance, each located to the words that hold it.

        An utterance the recognizer marked as a hallucination (``meta["hallucination"]``) raises nothing.
        """
        if utt.meta.get("hallucination"):
            return []
        text = utt.text
        norm, sc, order, deadline = self._start(text)
        out: list[Detection] = []
        source = utt.source
        for k, ri in enumerate(order):
            if deadline is not None and self.budget_clock() > deadline:
                self._over_budget(text, len(order) - k, len(order))
                break
            kept, silenced = self._raw_hits(ri, sc, source, True)
            if kept:
                self._detections(utt, norm, self.rules[ri], kept, silenced, out)
        return out

    def _detections(
        self,
        utt: Utterance,
        norm: Normalized,
        rule: Rule,
        kept: list[_Raw],
        silenced: list[tuple[_Raw, str]],
        out: list[Detection],
    ) -> None:
        """The Detections of one rule's firing matches (and the silenced ones beside them), into `out`."""
        idx = norm.orig_index
        original = norm.original
        for r in kept:
            s, e = r[0], r[1]
            if not idx or e <= s:
                os_ = oe = 0
            else:
                os_ = idx[s]
                oe = idx[min(e, len(idx)) - 1] + 1
            start_s, end_s = utt.char_times(os_, oe)
            details: dict[str, Any] = {
                "pattern": r[4],
                "rules_version": self.version,
                "pack": rule.pack,
                "char_span": [os_, oe],
                "tags": list(rule.tags),
                "exempted": [{"matched": _matched(norm, x), "reason": why} for x, why in silenced],
            }
            out.append(
                Detection(  # positional (a third faster than by keyword): Detection's field order
                    rule.id,
                    rule.category,
                    rule.code,
                    rule.severity,
                    rule.law,
                    utt.source,
                    start_s,
                    end_s,
                    original[os_:oe],  # matched
                    utt.text,
                    round(r[2], 1),  # score
                    r[3],  # mode
                    utt.index,
                    None,  # claim
                    details,
                )
            )

    def explain(self, text: str) -> Explanation:
        """Normalization steps, pinyin, and which rules fire or are silenced, with scores."""
        hits, silenced, norm = self.match(text)
        steps = normalize(text, record_steps=True).steps
        by_rule = self._by_id

        def conv(h: Hit) -> ExplainHit:
            r = by_rule[h.rule_id]
            return ExplainHit(
                r.id,
                r.category,
                r.code,
                r.severity,
                h.matched,
                display(norm.text[h.start : h.end]),
                round(h.score, 1),
                h.mode,
                h.pattern,
                h.reason,
            )

        return Explanation(
            text=text,
            steps=(("input", text), *steps),
            normalized=display(norm.text),
            pinyin=pinyin_display(norm.text),
            hits=tuple(conv(h) for h in hits),
            exempted=tuple(conv(h) for h in silenced) + self._boundary_silenced(norm),
            version=self.version,
        )

    def _boundary_silenced(self, norm: Normalized) -> tuple[ExplainHit, ...]:
        """Occurrences of two-character hit terms that matching does not count because they are read
        across a word boundary (see `_WordBounds.straddles`), for `explain`."""
        sc, _ = self._scan(norm)
        out: list[ExplainHit] = []
        for ai in sorted(sc.found):
            atom = self._atoms[ai]
            spans = sc.exact.get(atom.text) if atom.two_cjk else None
            for s, e, _score, _mode in spans or ():
                if not _straddles(sc, s, e):
                    continue
                bounds = sc.bounds
                words = bounds.around(s, e) if bounds is not None else atom.text
                for ri in self._hit_roles.get(ai, ()):
                    r = self._compiled[ri].rule
                    if r.enabled:
                        h = _hit(r.id, norm, (s, e, 100.0, "exact", atom.text), f"word boundary: {words}")
                        out.append(
                            ExplainHit(
                                r.id, r.category, r.code, r.severity, h.matched, display(atom.text),
                                100.0, "exact", atom.text, h.reason,
                            )
                        )
        return tuple(out)



def _exemption(
    comp: _Compiled,
    norm: Normalized,
    start: int,
    end: int,
    anchors: tuple[int, ...],
    exempt: tuple[str, ...],
    rx_spans: Sequence[tuple[str, list[tuple[int, int]]]],
    cues: tuple[str, ...],
) -> str:
    """Why a match text[start:end] of the rule is silenced ("" if not): an exemption phrase of `exempt`
    overlapping it (the rule's phrases worth looking for in this text), an exemption regex's match
    overlapping it (`rx_spans`: reason, spans of each), a negation cue of `cues` (the rule's cues the
    text holds) shortly before one of its `anchors`."""
    if exempt:
        text = norm.text
        for phrase in exempt:
            # an occurrence overlapping the hit lies within this window
            if text.find(phrase, max(0, start - len(phrase) + 1), end + len(phrase) - 1) >= 0:
                return f"exempt: {phrase}"
    for why, spans in rx_spans:
        for ms, me in spans:
            if ms < end and start < me:
                return why
    if cues:
        for anchor in anchors:
            cue = _negated(comp, norm, anchor, cues)
            if cue:
                return f"negation: {cue}"
    return ""


def _negated(comp: _Compiled, norm: Normalized, start: int, cues: tuple[str, ...]) -> str:
    """The negation cue ending at most `window` characters before `start` in the same clause.

    `cues`: the rule's cues that occur in the text, in the rule's order (longest first)."""
    text = norm.text
    ignore = comp.ignore_by_cue
    assert ignore is not None
    lo = max(0, start - comp.negation_window - len(comp.negation_cues[0]))  # cues: longest first
    before = text[lo:start]
    for cue in cues:
        k = before.rfind(cue)
        while k >= 0:
            at = lo + k
            cue_end = at + len(cue)
            if start - cue_end <= comp.negation_window and not norm.has_break(cue_end, start):
                if not any(at - j >= 0 and text.startswith(ig, at - j) for ig, j in ignore[cue]):
                    return cue
            k = before.rfind(cue, 0, k)
    return ""


def _hit(rule_id: str, norm: Normalized, r: tuple[Any, ...], reason: str) -> Hit:
    """The hit of a raw match (start, end, score, mode, pattern, ...), located in the original text."""
    s, e = r[0], r[1]
    idx = norm.orig_index
    if not idx or e <= s:
        os_ = oe = 0
    else:
        os_ = idx[s]
        oe = idx[min(e, len(idx)) - 1] + 1
    return Hit(rule_id, s, e, os_, oe, norm.original[os_:oe], r[2], r[3], r[4], reason)


def _matched(norm: Normalized, r: tuple[Any, ...]) -> str:
    """The original text of a raw match (what its `_hit` would hold as `matched`)."""
    s, e = r[0], r[1]
    idx = norm.orig_index
    if not idx or e <= s:
        return ""
    return norm.original[idx[s] : idx[min(e, len(idx)) - 1] + 1]

@functools.lru_cache(maxsize=65536)
def _term_forms(raw: str) -> tuple[str, str, str]:
    """A term's normalized text, pinyin codes and Latin pinyin (shared by every rule and set)."""
    text = normalize(raw).text
    codes = pinyin_codes(text)
    return text, codes, pinyin_latin(codes)


# A regex's literal sets beyond the one it is filed under are checked before it runs when a text is
# unlikely to hold them: estimated frequency (dictionary counts; see `_literal_frequency`) at most this.
REGEX_SET_MAX_FREQ = 20_000


def _literal_frequency() -> Any:
    """A rough count of how often a literal occurs (the segmenter's dictionary: the word's own count,
    else its rarest character's, divided by 100 per further character); without the segmenter
    loaded, shorter literals count as more frequent."""
    rank = _char_rank()
    if rank is None:
        return lambda lit: 10.0 ** (6 - len(lit))
    freq = _segmenter().FREQ

    def estimate(lit: str) -> float:
        f = freq.get(lit) if len(lit) > 1 else None
        if f:
            return float(f)
        return min(rank.get(c, 0) for c in lit) / 100.0 ** (len(lit) - 1)

    return estimate


_NEVER = "\uffff"  # a noncharacter: normalization drops it, so no text holds it


@functools.lru_cache(maxsize=1)
def _char_rank_cached() -> dict[str, int]:
    freq: dict[str, int] = {}
    for w, f in _segmenter().FREQ.items():
        if len(w) == 1 and f:
            freq[w] = freq.get(w, 0) + f
    for d in "0123456789":
        freq.setdefault(d, 1_000_000)
    for ch, f in list(freq.items()):  # a syllable code is as frequent as its characters together
        code = pinyin_codes(ch)
        if code != ch:
            freq[code] = freq.get(code, 0) + f
    return freq


def _char_rank() -> dict[str, int] | None:
    """Characters (and syllable codes) by frequency, when the word segmenter is loaded."""
    return _char_rank_cached() if _SEGMENTER is not None else None


# what a character automaton key is besides a term (bits): a literal of a regex's literal sets, whose
# presence `_Scratch.present` records; an unless/exempt phrase or negation cue (`_Scratch.phrases`)
_LITERAL = 1
_PHRASE = 2
_EVERYWHERE: frozenset[str] = frozenset({""})  # "" occurs in every text (_Scratch.phrases holds it)
_PROBE_ORDER = (-1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6, 7, -7, 8, -8)  # nearest the anchor first


def _fuzzy_probes(
    entries: tuple[tuple[Any, ...], ...],
) -> tuple[tuple[tuple[Any, ...], ...], tuple[tuple[int, dict[str, tuple[int, ...]]], ...], tuple[int, ...]]:
    """An anchor's fuzzy entries, with an index that proposes only those a text can pass.

    A same-length entry passes with at most `max_diff` of its syllables outside the anchor differing,
    so among any `max_diff + 1` of them one agrees with the text: the entry is filed under that many
    (relative position, code) probes. Entries with other shapes, or too few syllables to file, are
    always proposed. Returns (entries, probes by position, always-proposed entry indices).
    """
    index: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    always: list[int] = []
    for ei, (_ai, _off, _L, _latin, _codes, max_diff, shapes, rest) in enumerate(entries):
        rels = dict(rest)
        need = max_diff + 1
        if len(shapes) != 1 or len(rels) < need or len(rels) != len(rest):
            always.append(ei)
            continue
        chosen = [r for r in _PROBE_ORDER if r in rels][:need]
        if len(chosen) < need:
            chosen += [r for r in sorted(rels) if r not in chosen][: need - len(chosen)]
        for r in chosen:
            index[r][rels[r]].append(ei)
    probes = tuple(
        (r, {c: tuple(v) for c, v in by_code.items()}) for r, by_code in sorted(index.items())
    )
    return entries, probes, tuple(always)


def _case_sensitive(rx: re.Pattern[str]) -> bool:
    """No IGNORECASE anywhere in the pattern (its required literals then bound every match)."""
    return not rx.flags & re.IGNORECASE and not re.search(r"\(\?[a-zA-Z]*i[a-zA-Z-]*[:)]", rx.pattern)


def _is_cjk(text: str) -> bool:
    return all("\u4e00" <= ch <= "\u9fff" for ch in text)


_SEG_LOCK = threading.Lock()
_SEGMENTER: Any = None


def _segmenter() -> Any:
    """jieba's tokenizer (its dictionary loads once, on first need, ~1 s)."""
    global _SEGMENTER
    if _SEGMENTER is None:
        with _SEG_LOCK:
            if _SEGMENTER is None:
                import jieba

                jieba.setLogLevel(logging.WARNING)
                tok = jieba.Tokenizer()
                tok.initialize()
                _SEGMENTER = tok
    return _SEGMENTER


def word_bounds(text: str) -> frozenset[int]:
    """Offsets in `text` where one word ends and the next begins (jieba's segmentation).

    The same segmentation as ``jieba.Tokenizer.cut(text, HMM=True)`` (version 0.42: blocks, the
    dictionary DAG, the best route, the HMM for runs of unknown single characters), computed without
    building the words, with each dictionary fragment's log probability looked up once per process.
    """
    wb = _WordBounds(text)
    known = wb._settle()
    while wb.pending:
        wb.resolve(0)
    return frozenset(known)


class _WordBounds:
    """`word_bounds` of one text, computed on demand.

    `straddles` first looks at the dictionary route of the term's block from its end back to the
    term's second character only: when the best route word starting at that character is the
    character alone, no dictionary word starts there and runs on past the term, which settles most
    terms without the rest of the route. Otherwise the whole segmentation is computed: the dictionary
    route at once, the HMM of a run of unknown single characters only when a position inside the run
    is asked about (the run's own ends are word boundaries whatever the HMM makes of it).
    """

    __slots__ = ("blocks", "known", "pending", "routes", "text", "words")

    def __init__(self, text: str) -> None:
        self.text = text
        self.blocks: list[tuple[int, str, bool]] | None = None  # (offset, block, Chinese block)
        self.routes: dict[int, tuple[list[float], list[int], list[int]]] = {}  # offset -> p, x, [lo]
        self.known: set[int] | None = None
        self.pending: list[tuple[int, str]] = []  # (offset, run) whose inside the HMM decides
        self.words: dict[int, int] = {}  # start -> end of each dictionary word of two or more characters

    def _blocks(self) -> list[tuple[int, str, bool]]:
        if self.blocks is None:
            import jieba

            re_han = jieba.re_han_default
            out = []
            pos = 0
            for blk in re_han.split(self.text):
                if blk:
                    out.append((pos, blk, re_han.match(blk) is not None))
                    pos += len(blk)
            self.blocks = out
        return self.blocks

    def _route(self, at: int, blk: str, lo: int) -> tuple[list[float], list[int]]:
        """The dictionary route of the block at offset `at`, computed from its end down to `lo`."""
        r = self.routes.get(at)
        if r is None:
            n = len(blk)
            r = self.routes[at] = ([0.0] * (n + 1), [0] * (n + 1), [n])
        route_p, route_x, done = r
        if lo < done[0]:
            _route_down(_segmenter(), blk, route_p, route_x, done[0], lo)
            done[0] = lo
        return route_p, route_x

    def _settle(self) -> set[int]:
        """Every boundary the dictionary route gives (and the runs left to the HMM)."""
        if self.known is None:
            import jieba

            tok = _segmenter()
            known = {0}
            pending = self.pending
            re_skip = jieba.re_skip_default
            for pos, blk, han in self._blocks():
                if han:
                    _, route_x = self._route(pos, blk, 0)
                    for w in _route_words(tok, blk, route_x):
                        if isinstance(w, str):
                            pending.append((pos, w))
                            pos += len(w)
                        else:
                            if w > 1:
                                self.words[pos] = pos + w
                            pos += w
                        known.add(pos)
                else:
                    for x in re_skip.split(blk):
                        if re_skip.match(x):
                            pos += len(x)
                            known.add(pos)
                        else:
                            for _ in x:
                                pos += 1
                                known.add(pos)
            self.known = known
        return self.known

    def resolve(self, k: int) -> None:
        """Segment the k-th pending run with the HMM."""
        from jieba import finalseg

        known = self._settle()
        at, run = self.pending.pop(k)
        for t in finalseg.cut(run):
            at += len(t)
            known.add(at)

    def __contains__(self, p: int) -> bool:
        if p in self._settle():
            return True
        for k, (at, run) in enumerate(self.pending):
            if at < p < at + len(run):
                self.resolve(k)
                return p in self._settle()
        return False

    def straddles(self, start: int, end: int) -> bool:
        """Whether the two-character term text[start:end] is read across a word boundary.

        True when its second character begins a longer dictionary word on the route (环保|本身 holds
        保本, 站|内|定购 holds 内定), unless the term heads a compound (`_heads_compound`). A boundary
        only the HMM guessed inside a run of characters the dictionary does not know (高|仿表, 刮|码货)
        silences nothing: no dictionary word claims the second character there.
        """
        k = start + 1
        if self.known is None:
            for at, blk, han in self._blocks():
                j = k - at  # the term's second character, in this block
                if 0 <= j < len(blk):
                    if han and j >= 1:
                        if j + 1 == len(blk):
                            return False  # the block ends after the term: no word runs on past it
                        _, route_x = self._route(at, blk, j)
                        if route_x[j] == j:
                            return False  # no dictionary word starts at the second character
                    break
        self._settle()
        w_end = self.words.get(k, 0)
        if w_end <= end:
            return False
        return not self._heads_compound(start, end, w_end)

    def around(self, start: int, end: int) -> str:
        """The words holding text[start:end], separated by |: 环保|本身 for 保本 (for explanations)."""
        known = self._settle()
        lo = max((p for p in known if p <= start), default=0)
        hi = self.words.get(start + 1, end)
        return f"{self.text[lo : start + 1]}|{self.text[start + 1 : hi]}"

    def _heads_compound(self, start: int, end: int, w_end: int) -> bool:
        """Whether a term whose second character starts the dictionary word text[start+1:w_end] still
        keeps its meaning: that word is a noun of two characters and the term heads a compound whose
        rest is one nominal character (特|价款 特价款, 过|期货, 美|白霜, 一|套房, 虚|标的). Not when the
        first character ends another word (环保|本身), is a verb or preposition taking that word as its
        object (开|光镜, 看|片子, 被|罚款, 拉|人头), when the word is a verb, adjective or adverb
        (站|内|定购, 空|包装, 高|仿真, 都|有效), when its rest is a verb or adjective (中|风险), a noun
        suffix of the second character (片子, 个子, 人们), or more than one character (无|毒副作用)."""
        if w_end != end + 1 or start not in self:
            return False
        tags, nouns = _word_tags()
        text = self.text
        if text[start + 1 : w_end] not in nouns or tags.get(text[start], "v").startswith(_VERBAL):
            return False
        rest = text[end]
        return rest not in _NOUN_SUFFIXES and tags.get(rest, "") in _NOMINAL


# jieba's part-of-speech tags (of single characters): a first character tagged as a verb or preposition
# takes the word after it as its object; a rest of one of these tags is a noun, classifier, numeral or 的
_VERBAL = ("v", "p")
_NOMINAL = frozenset({"n", "ng", "q", "m", "uj"})
# characters that make a noun of the character before them (片子, 石头, 人们, 画儿): the word is that
# noun, and a term ending with that character is not its head
_NOUN_SUFFIXES = frozenset("子头儿们")
_WORD_TAGS: tuple[dict[str, str], frozenset[str]] | None = None


def _word_tags() -> tuple[dict[str, str], frozenset[str]]:
    """From the segmenter's dictionary (loaded once, ~0.3 s): the part-of-speech tag of each single
    character, and the words of two characters tagged as nouns (n, nr, ns, nz, ...)."""
    global _WORD_TAGS
    if _WORD_TAGS is None:
        tok = _segmenter()  # takes the lock itself
        with _SEG_LOCK:
            if _WORD_TAGS is None:
                tags: dict[str, str] = {}
                nouns: set[str] = set()
                with tok.get_dict_file() as f:
                    for raw in f:
                        line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
                        parts = line.split()
                        if len(parts) < 3:
                            continue
                        w = parts[0]
                        if len(w) == 1:
                            tags[w] = parts[2]
                        elif len(w) == 2 and parts[2].startswith("n"):
                            nouns.add(w)
                _WORD_TAGS = tags, frozenset(nouns)
    return _WORD_TAGS


# dictionary fragment -> log(frequency) - log(total) in the segmenter's dictionary, None for a prefix
# of longer words only (frequency 0); fragments the dictionary lacks are not kept
_LOGP: dict[str, float | None] = {}
_MISSING: Any = object()


def _dag_words(tok: Any, sentence: str) -> list[int | str]:
    """Word lengths of jieba's ``__cut_DAG`` (get_DAG, calc) before its HMM pass: the runs of unknown
    single characters that the HMM segments are returned as strings."""
    n = len(sentence)
    route_p = [0.0] * (n + 1)
    route_x = [0] * (n + 1)
    _route_down(tok, sentence, route_p, route_x, n, 0)
    return _route_words(tok, sentence, route_x)


def _route_down(
    tok: Any, sentence: str, route_p: list[float], route_x: list[int], hi: int, lo: int
) -> None:
    """jieba's ``calc`` over the DAG (``get_DAG``) for positions hi-1 down to lo (those from hi on are
    done): route_x[k] is the last character of the best word starting at k."""
    freq = tok.FREQ
    n = len(sentence)
    logp = _LOGP
    get = logp.get
    logtotal = math.log(tok.total)
    alone = math.log(1) - logtotal  # a character that starts no dictionary word
    for k in range(hi - 1, lo - 1, -1):
        # DAG[k]: ends i of dictionary words starting at k (or k alone)
        best_p = 0.0
        best_x = -1
        i = k
        frag = sentence[k]
        while True:
            lp = get(frag, _MISSING)
            if lp is _MISSING:
                f = freq.get(frag)
                if f is None:
                    break
                lp = logp[frag] = math.log(f) - logtotal if f else None
            if lp is not None:
                p = lp + route_p[i + 1]
                if best_x < 0 or p >= best_p:  # max over (p, i) with i increasing: ties go to the longer
                    best_p, best_x = p, i
            i += 1
            if i >= n:
                break
            frag = sentence[k : i + 1]
        if best_x < 0:
            best_p, best_x = alone + route_p[k + 1], k
        route_p[k] = best_p
        route_x[k] = best_x


def _route_words(tok: Any, sentence: str, route_x: list[int]) -> list[int | str]:
    """The words along the route (``__cut_DAG``): lengths, and runs of single characters the HMM
    segments as strings."""
    freq = tok.FREQ
    n = len(sentence)
    words: list[int | str] = []
    x = 0
    buf_start = -1
    while x < n:
        y = route_x[x] + 1
        if y - x == 1:
            if buf_start < 0:
                buf_start = x
        else:
            if buf_start >= 0:
                _flush_buf(sentence[buf_start:x], freq, words)
                buf_start = -1
            words.append(y - x)
        x = y
    if buf_start >= 0:
        _flush_buf(sentence[buf_start:], freq, words)
    return words


def _flush_buf(buf: str, freq: dict[str, int], words: list[int | str]) -> None:
    if len(buf) == 1:
        words.append(1)
    elif not freq.get(buf):
        words.append(buf)
    else:
        words.extend([1] * len(buf))


def _straddles(sc: _Scratch, start: int, end: int) -> bool:
    """A two-character term read across a word boundary: 环保|本身 holds 保本, 站|内|定购 holds 内定.

    True when the term's second character starts a longer dictionary word (see `_WordBounds.straddles`).
    A term that starts a longer word (特供酒), whose second character stands alone (酒护|肝), that the
    HMM alone splits (高|仿表) or that heads a compound (特|价款) still counts.
    """
    # No dictionary word of two or more characters starts at the second character (jieba's dictionary
    # holds every prefix of its words, with frequency 0 for a prefix only): then no route word does
    # either, whatever the blocks and the route. This settles most terms without segmenting the line.
    text = sc.norm.text
    freq = _segmenter().FREQ
    k = start + 1
    i = k + 2
    n = len(text)
    while True:
        if i > n:
            return False
        f = freq.get(text[k:i])
        if f is None:
            return False
        if f:
            break
        i += 1
    b = sc.bounds
    if b is None:
        b = sc.bounds = _WordBounds(text)
    return b.straddles(start, end)


def _is_latin(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def _needs_bound(key: str) -> bool:
    return _is_latin(key[0]) or _is_latin(key[-1])


def _bounded(text: str, start: int, end: int, key: str) -> bool:
    """A term that starts or ends with a Latin letter or digit must not continue a Latin word there."""
    if (
        _is_latin(key[0])
        and start > 0
        and _is_latin(text[start - 1])
        and text[start - 1].isalpha() == key[0].isalpha()
    ):
        return False
    return not (
        _is_latin(key[-1])
        and end < len(text)
        and _is_latin(text[end])
        and text[end].isalpha() == key[-1].isalpha()
    )


def _dedupe(raw: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Overlapping hits of one rule collapse to the best (score, then length): raw matches
    (start, end, score, ...), in order of start."""
    if len(raw) < 2:
        return raw
    # best first: score, then length, then start, then the order found (as a stable sort would)
    ordered = sorted([(-r[2], r[0] - r[1], r[0], i) for i, r in enumerate(raw)])
    kept: list[tuple[Any, ...]] = []
    for *_, i in ordered:
        r = raw[i]
        s, e = r[0], r[1]
        for k in kept:
            if s < k[1] and k[0] < e:
                break
        else:
            kept.append(r)
    if len(kept) > 1:
        kept.sort(key=_START)
    return kept


def _dedupe_reasons(raw: list[tuple[tuple[Any, ...], str]]) -> list[tuple[tuple[Any, ...], str]]:
    """`_dedupe` of (raw match, reason) pairs."""
    if len(raw) < 2:
        return raw
    ordered = sorted([(-p[0][2], p[0][0] - p[0][1], p[0][0], i) for i, p in enumerate(raw)])
    kept: list[tuple[tuple[Any, ...], str]] = []
    for *_, i in ordered:
        p = raw[i]
        s, e = p[0][0], p[0][1]
        for k in kept:
            if s < k[0][1] and k[0][0] < e:
                break
        else:
            kept.append(p)
    if len(kept) > 1:
        kept.sort(key=lambda q: q[0][0])
    return kept


_START = operator.itemgetter(0)


# ---------------------------------------------------------------- hot reload


def _fingerprint(dirs: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    """Sizes and times of every file a rule set is built from: packs, their lexicons, the law table."""
    out = []
    for d in [*dirs, *lexicon_dirs([Path(x) for x in dirs])]:
        try:
            files = pack_files(d)
        except FileNotFoundError:
            out.append((str(d), -1, -1))
            continue
        for p in files:
            try:
                st = os.stat(p)
            except FileNotFoundError:
                continue
            out.append((str(p), st.st_mtime_ns, st.st_size))
    try:
        st = os.stat(DEFAULT_LAWS)
        out.append((str(DEFAULT_LAWS), st.st_mtime_ns, st.st_size))
    except FileNotFoundError:
        pass
    return tuple(out)


class RuleHolder:
    """Holds the rule set in force and reloads it when its packs change.

    `current` is a plain attribute read (atomic in CPython): callers take it once per utterance.
    `maybe_reload()` is cheap (a stat of each pack at most every `min_interval_s`); when the packs
    changed it loads them, and only a set that validates replaces the one in force. A pack that fails
    validation is logged and refused; the failing state is remembered so it is not retried until the
    files change again. Any thread may call `maybe_reload`; a lock makes reloads one at a time.

    A reload runs on its own thread and is waited for at most `reload_timeout_s`: one that takes
    longer is refused like an invalid pack (its result, if it ever comes, is dropped, and no second
    reload starts while it still runs), so the caller, the monitor's analysis thread, never stalls.
    Every refusal is counted (`failures`), kept as `last_failure` ("rules reload failed: <reason>")
    with `last_failure_ts` (wall clock), logged, and passed to `on_failure` (the monitor's status,
    metrics and ops webhook). `last_error` is cleared by the next good reload; the rest stays.
    """

    def __init__(
        self,
        dirs: Sequence[Path] | None = None,
        *,
        min_interval_s: float = 1.0,
        clock: Any = time.monotonic,
        reload_timeout_s: float = 30.0,
        line_budget_s: float | None = DEFAULT_LINE_BUDGET_S,
        on_failure: Any = None,
    ) -> None:
        self.dirs = [Path(d) for d in (dirs if dirs else [DEFAULT_RULES_DIR])]
        self.min_interval_s = min_interval_s
        self.reload_timeout_s = reload_timeout_s
        self.line_budget_s = line_budget_s
        self.on_failure = on_failure  # Callable[[str], None] | None
        self._clock = clock
        self._lock = threading.Lock()
        self._fp = _fingerprint(self.dirs)
        self.current: RuleSet = RuleSet.load(self.dirs)
        self.current.line_budget_s = line_budget_s
        self._last_check = clock()
        self.last_error: RulePackError | None = None
        self.last_failure: str | None = None
        self.last_failure_ts: float | None = None
        self.failures = 0
        self.reloads = 0
        self._running: threading.Thread | None = None

    def _load(self) -> RuleSet | RulePackError:
        """Load on a worker thread, waiting at most `reload_timeout_s`."""
        where = self.dirs[-1] if self.dirs else Path(".")
        if self._running is not None and self._running.is_alive():
            return RulePackError(where, 0, "reload", "the previous reload is still running")
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["set"] = RuleSet.load(self.dirs)
            except RulePackError as e:
                box["error"] = e
            except Exception as e:  # unreadable file, lexicon error...: refused like an invalid pack
                box["error"] = RulePackError(where, 0, "reload", f"{type(e).__name__}: {e}")

        t = threading.Thread(target=run, name="rules-reload", daemon=True)
        t.start()
        t.join(self.reload_timeout_s)
        if t.is_alive():
            self._running = t
            return RulePackError(where, 0, "reload", f"timed out after {self.reload_timeout_s:g} s")
        self._running = None
        if "error" in box:
            return box["error"]  # type: ignore[no-any-return]
        return box["set"]  # type: ignore[no-any-return]

    def _failed(self, e: RulePackError) -> None:
        self.last_error = e
        self.failures += 1
        self.last_failure = f"rules reload failed: {e}"
        self.last_failure_ts = time.time()
        logger.error("rule packs refused, keeping version %s: %s", self.current.version, e)
        if self.on_failure is not None:
            try:
                self.on_failure(self.last_failure)
            except Exception:
                logger.exception("rules reload failure hook failed")

    def maybe_reload(self, *, force: bool = False) -> RuleSet:
        """Reload if the packs changed; returns the rule set now in force."""
        now = self._clock()
        if not force and now - self._last_check < self.min_interval_s:
            return self.current
        with self._lock:
            self._last_check = now
            fp = _fingerprint(self.dirs)
            if fp == self._fp and not force:
                return self.current
            self._fp = fp
            new = self._load()
            if isinstance(new, RulePackError):
                self._failed(new)
                return self.current
            if self.last_error is not None:
                logger.warning("rule packs valid again (after: %s)", self.last_error)
            self.last_error = None
            if new.version != self.current.version:
                logger.info("rule packs reloaded: version %s -> %s", self.current.version, new.version)
                new.line_budget_s = self.line_budget_s
                self.current = new
                self.reloads += 1
            return self.current

    def status(self) -> dict[str, Any]:
        """What `livewatch status` and /metrics show about this holder."""
        return {
            "dirs": [str(d) for d in self.dirs],
            "version": self.current.version,
            "ok": self.last_error is None,
            "error": None if self.last_error is None else str(self.last_error),
            "reload_failures": self.failures,
            "last_failure": self.last_failure,
            "last_failure_ts": self.last_failure_ts,
            "reloads": self.reloads,
        }


# ---------------------------------------------------------------- detector


class RulesDetector(Detector[RulesDetectorConfig]):
    """Rule packs over speech and on-screen text (type ``rules``)."""

    type = "rules"

    config_model = RulesDetectorConfig

    def __init__(self, config: RulesDetectorConfig | None = None) -> None:
        super().__init__(config or RulesDetectorConfig())
        dirs = [DEFAULT_RULES_DIR] if self.config.include_defaults else []
        dirs += list(self.config.dirs)
        budget = self.config.line_budget_ms / 1000 or None
        self.holder = RuleHolder(dirs, min_interval_s=self.config.reload_interval_s, line_budget_s=budget)

    def detect(self, context: DetectionContext) -> Iterable[Detection]:
        if context.utterance is None:
            return []
        rules = self.holder.maybe_reload() if self.config.hot_reload else self.holder.current
        return rules.detect(context.utterance)

    @classmethod
    def phrase_table(cls) -> PhraseTable:
        return RuleSet.load([DEFAULT_RULES_DIR]).phrase_table()
