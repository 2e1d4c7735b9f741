"""Rule packs: the YAML language, its validation with line numbers, and layering.

A rule pack is one YAML file in a rules directory (``configs/rules/*.yaml``). The schema (pydantic,
unknown fields rejected) is `PackSpec`; a pack holds `RuleSpec`s and may hold `OverrideSpec`s that
disable or re-weight rules of earlier layers by id. Directories are layers: shipped defaults first,
then a site's own directory; a rule id defined again in a later layer replaces the earlier rule, and
a layer's overrides apply to everything loaded up to and including that layer.

Every error is a `RulePackError` whose text is ``path:line: field: reason``; the line comes from the
YAML node that holds the offending value (we compose the YAML ourselves and keep each node's start
mark, then map pydantic's error locations back to them).

Regular expressions are parsed at load and rejected when they could backtrack catastrophically
(a quantified group that itself contains a quantifier, or a quantified alternation whose branches can
start alike), polynomially (adjacent quantifiers that can match the same characters, such as ``a*a*``
or ``.*.*x``: see `detectors.regex_vet`), when they can match the empty string, or when they use
backreferences; a rejected regex is never run (Python's `re` cannot be interrupted mid-match). Their literal parts must already be in normalized form (simplified script,
lowercase, half width) because they run on normalized text. Regex macros: ``{num}`` any number
(digits or Chinese numerals), ``{big}`` a number of at least ten thousand (digits or with 万/亿).

Everything here is pure: loading reads files and returns values; nothing is cached or shared.
"""

from __future__ import annotations

import functools
import hashlib
import re
import re._constants as sre_constants
import re._parser as sre_parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from detectors import yamlsafe
from detectors.laws import DEFAULT_LAWS, LawTable, LawTableError, load_laws, split_refs
from detectors.lexicons import REGEX_REF_RE, LexiconError, Lexicons, lexicon_dirs, load_lexicons
from detectors.normalize import normalize_term
from detectors.regex_vet import polynomial_problem
from detectors.types import CATEGORIES, SEVERITIES

__all__ = [
    "CATEGORIES",
    "DEFAULT_NEGATION_CUES",
    "LoadedRules",
    "NearSpec",
    "NegationSpec",
    "OverrideSpec",
    "PackSpec",
    "RulePackError",
    "RuleSpec",
    "TermSpec",
    "collect_errors",
    "expand_macros",
    "expand_term",
    "load_rules",
    "pack_files",
    "regex_problem",
    "required_literal_groups",
    "required_literals",
]

Category = Literal[
    "false_claim",
    "price_fraud",
    "fake_sales",
    "vulgar",
    "defamation",
    "counterfeit",
    "food_safety",
    "pyramid_selling",
    "consumer_rights",
    "improper_prize",
    "prohibited_goods",
    "orientation",
]
Severity = Literal["low", "medium", "high", "critical"]
Mode = Literal["exact", "pinyin", "fuzzy"]
Source = Literal["speech", "screen"]


def _all_sources() -> list[Source]:
    return ["speech", "screen"]


assert set(SEVERITIES) == {"low", "medium", "high", "critical"}

DEFAULT_NEGATION_CUES = ("不", "没", "没有", "并非", "不能", "不是", "无法", "不会", "未", "绝非")
DEFAULT_NEGATION_IGNORE = (
    "不买",
    "不抢",
    "不拍",
    "不下单",
    "不错",
    "不要错过",
    "不得不",
    "不少",
    "不管",
    "没想到",
    "不仅",
    "不光",
    "不但",
    "不只",
    "没得说",
    "不用说",
    "不用等",
    "别家",
    "别人",
    "别的",
    "特别",
    "区别",
    "分别",
    "级别",
    "类别",
    "未来",
    # product words that start with a cue: 不粘锅是行业第一 claims a rank, it negates nothing
    "不粘",
    "不沾",
    "不锈钢",
    "不倒翁",
    "不干胶",
    "不织布",
)
_ID_RE = r"^[a-z0-9][a-z0-9_.\-]*$"

MACROS = {
    "{num}": r"(?:[0-9]+(?:\.[0-9]+)?|[零〇一二两三四五六七八九十百千万亿几]+)",
    "{big}": r"(?:[0-9]{5,}|[0-9.零〇一二两三四五六七八九十百千几]*[万亿][零〇一二两三四五六七八九十百千万亿几0-9]*)",
}


_N_CN = [
    "一",
    "二",
    "两",
    "三",
    "四",
    "五",
    "六",
    "七",
    "八",
    "九",
    "十",
    *[f"十{d}" for d in "一二三四五六七八九"],
    "二十",
    "三十",
    "四十",
    "五十",
    "六十",
    "七十",
    "八十",
    "九十",
    "一百",
    "几",
    "十几",
    "几十",
]
_N_DIGITS = [str(i) for i in range(1, 21)] + [str(i) for i in range(30, 101, 10)]
TERM_NUMERALS: tuple[str, ...] = tuple(dict.fromkeys([*_N_CN, *_N_DIGITS]))


def expand_term(term: str) -> list[str]:
    """A literal term with ``{n}`` stands for the term with each small number (1-20, tens to 100, 几)."""
    if "{n}" not in term:
        return [term]
    return [term.replace("{n}", n) for n in TERM_NUMERALS]


class RulePackError(Exception):
    """A rule pack that cannot be loaded; str() is ``path:line: field: reason``."""

    def __init__(self, path: Path | str, line: int, field: str, reason: str) -> None:
        self.path = Path(path)
        self.line = line
        self.field = field
        self.reason = reason
        super().__init__(f"{self.path}:{line}: {field}: {reason}")


# ---------------------------------------------------------------- schema

_STRICT = ConfigDict(extra="forbid", frozen=True)


class TermSpec(BaseModel):
    """A literal term with its own matching mode (overrides the rule's)."""

    model_config = _STRICT
    term: str = Field(min_length=1, description="The phrase, as it would be written.")
    mode: Mode = Field(
        description="exact: characters only; pinyin: also homophones; fuzzy: also near spellings."
    )


Term = str | TermSpec


class NearSpec(BaseModel):
    """Proximity: a term of `a` within `within` characters of a term of `b` (same utterance)."""

    model_config = _STRICT
    a: list[Term] = Field(min_length=1, description="First term list (e.g. disease terms).")
    b: list[Term] = Field(min_length=1, description="Second term list (e.g. cure terms).")
    within: int = Field(
        ge=0, le=200, description="Most characters allowed between the two terms (normalized text)."
    )
    ordered: bool = Field(False, description="If true, the `a` term must come before the `b` term.")


class NegationSpec(BaseModel):
    """Suppress a hit when a negation cue ends at most `window` characters before it (same clause)."""

    model_config = _STRICT
    cues: list[str] = Field(
        default_factory=lambda: list(DEFAULT_NEGATION_CUES), min_length=1, description="Negation words."
    )
    window: int = Field(4, ge=0, le=30, description="Characters allowed between the cue's end and the hit.")
    ignore: list[str] = Field(
        default_factory=lambda: list(DEFAULT_NEGATION_IGNORE),
        description="Phrases that contain a cue but do not negate (不买就, 不错, 不仅).",
    )


class PackDefaults(BaseModel):
    """Values every rule of the pack takes unless it sets its own."""

    model_config = _STRICT
    mode: Mode = Field("pinyin", description="Default matching mode.")
    threshold: float = Field(
        88.0, ge=0, le=100, description="Default minimum score (exact=100, pinyin=95, fuzzy=similarity)."
    )
    negation: NegationSpec | None = Field(None, description="Default negation handling (none when absent).")
    exempt: list[str] = Field(
        default_factory=list, description="Exemption phrases added to every rule of the pack."
    )
    unless: list[str] = Field(
        default_factory=list,
        description="NOT phrases added to every rule of the pack (e.g. cues of quoted law text).",
    )
    sources: list[Source] = Field(default_factory=_all_sources, description="Sources the rules apply to.")


class RuleSpec(BaseModel):
    """One rule as written in a pack."""

    model_config = _STRICT
    id: str = Field(
        pattern=_ID_RE, description="Stable id, unique across all packs (e.g. false_claim.a1.superlative)."
    )
    category: Category | None = Field(None, description="Alert category; defaults to the pack's.")
    code: str = Field(pattern=r"^[A-Z][0-9]{1,2}$", description="Finer type from DOMAIN.md (A1, B3, ...).")
    severity: Severity = Field(description="low | medium | high | critical.")
    law: str | None = Field(None, min_length=1, description="Law reference; defaults to the pack's.")
    description: str = Field("", description="What the rule catches, for reviewers.")
    tags: list[str] = Field(default_factory=list, description="Free tags for filtering and reports.")
    enabled: bool = Field(True, description="Disabled rules are loaded and validated but never fire.")
    mode: Mode | None = Field(None, description="exact | pinyin | fuzzy; defaults to the pack's.")
    threshold: float | None = Field(None, ge=0, le=100, description="Minimum score; defaults to the pack's.")
    sources: list[Source] | None = Field(None, description="speech and/or screen; defaults to the pack's.")
    terms: list[Term] = Field(default_factory=list, description="Literal terms; any one is a hit.")
    regex: list[str] = Field(
        default_factory=list, description="Regular expressions over normalized text; any match is a hit."
    )
    near: list[NearSpec] = Field(
        default_factory=list, description="Proximity pairs; any satisfied pair is a hit."
    )
    require: list[list[Term]] = Field(
        default_factory=list, description="AND: each list needs one of its terms somewhere in the utterance."
    )
    unless: list[str] = Field(
        default_factory=list, description="NOT: any of these anywhere in the utterance silences the rule."
    )
    exempt: list[str] = Field(
        default_factory=list, description="Exemption phrases: a hit overlapping one is silenced."
    )
    exempt_regex: list[str] = Field(
        default_factory=list, description="Exemption regexes over normalized text."
    )
    negation: NegationSpec | bool | None = Field(
        None, description="Negation handling: true for defaults, false to turn the pack default off."
    )
    should_flag: list[str] = Field(min_length=1, description="Phrases this rule must flag (tests run them).")
    should_not_flag: list[str] = Field(
        min_length=1, description="Phrases this rule must not flag (tests run them)."
    )

    @model_validator(mode="after")
    def _has_pattern(self) -> RuleSpec:
        if not (self.terms or self.regex or self.near):
            raise ValueError("a rule needs at least one of terms, regex, near")
        return self


class RulePatch(BaseModel):
    """Site re-weighting of a shipped rule, by id."""

    model_config = _STRICT
    severity: Severity | None = Field(None, description="New severity.")
    threshold: float | None = Field(None, ge=0, le=100, description="New minimum score.")
    enabled: bool | None = Field(None, description="Turn the rule on or off.")
    mode: Mode | None = Field(None, description="New matching mode.")
    law: str | None = Field(None, min_length=1, description="New law reference.")
    tags: list[str] | None = Field(None, description="Replace the rule's tags.")


class OverrideSpec(BaseModel):
    """Changes to rules loaded from this or earlier layers, without copying their packs."""

    model_config = _STRICT
    disable: list[str] = Field(default_factory=list, description="Rule ids to disable.")
    enable: list[str] = Field(default_factory=list, description="Rule ids to enable.")
    patch: dict[str, RulePatch] = Field(default_factory=dict, description="Per rule id: fields to change.")


class PackSpec(BaseModel):
    """One YAML file."""

    model_config = _STRICT
    pack: str = Field(pattern=_ID_RE, description="Pack name.")
    category: Category | None = Field(None, description="Default category of the pack's rules.")
    description: str = Field("", description="What the pack covers.")
    law: str | None = Field(None, min_length=1, description="Default law reference of the pack's rules.")
    defaults: PackDefaults = Field(default_factory=PackDefaults, description="Defaults for the pack's rules.")
    rules: list[RuleSpec] = Field(default_factory=list, description="The rules.")
    clean: list[str] = Field(
        default_factory=list, description="Phrases that no rule of the whole set may flag (tests run them)."
    )
    overrides: OverrideSpec | None = Field(None, description="Changes to rules of this or earlier layers.")

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: list[RuleSpec]) -> list[RuleSpec]:
        seen: set[str] = set()
        for r in rules:
            if r.id in seen:
                raise ValueError(f"duplicate rule id {r.id!r} in this pack")
            seen.add(r.id)
        return rules


# ---------------------------------------------------------------- YAML with lines


# LibYAML's parser when PyYAML was built with it (ten times faster on large packs); marks are the same.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineMap:
    def __init__(self) -> None:
        self.lines: dict[tuple[Any, ...], int] = {}

    def line_for(self, loc: Sequence[Any]) -> int:
        loc = tuple(loc)
        for k in range(len(loc), -1, -1):
            line = self.lines.get(loc[:k])
            if line is not None:
                return line
        return 1


def _compose(path: Path, text: str) -> tuple[Any, _LineMap]:
    lm = _LineMap()
    try:  # limits: aliases, depth, size (an alias bomb is refused here, before anything expands)
        node = yamlsafe.compose(text, path)
    except yamlsafe.YamlLoadError as e:
        raise RulePackError(path, e.line, "yaml", e.reason) from None
    loader = _LOADER("")  # constructs scalars only; the nodes come from the safe composer
    try:
        if node is None:
            raise RulePackError(path, 1, "file", "empty rule pack")
        data = _construct(loader, node, (), lm, path)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise RulePackError(path, line, "yaml", str(e.problem or e.context or "invalid YAML")) from e
    finally:
        loader.dispose()
    return data, lm


def _construct(loader: Any, node: yaml.Node, loc: tuple[Any, ...], lm: _LineMap, path: Path) -> Any:
    lm.lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            key = _scalar(loader, knode, path)
            if not isinstance(key, str | int | float | bool) or key is None:
                raise RulePackError(
                    path, knode.start_mark.line + 1, str(key), "mapping keys must be plain scalars"
                )
            if key in out:
                raise RulePackError(
                    path, knode.start_mark.line + 1, ".".join(map(str, (*loc, key))), "duplicate key"
                )
            out[key] = _construct(loader, vnode, (*loc, key), lm, path)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(loader, v, (*loc, i), lm, path) for i, v in enumerate(node.value)]
    return _scalar(loader, node, path)


def _scalar(loader: Any, node: yaml.Node, path: Path) -> Any:
    """A scalar, or a `RulePackError` at its line when no safe constructor can build it (``2020-13-45``,
    ``!!int 0xzz``): PyYAML raises a bare ValueError there (found by tests/faults/test_fuzz.py)."""
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, TypeError, OverflowError) as e:
        value = node.value if isinstance(node.value, str) else ""
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise RulePackError(path, node.start_mark.line + 1, "yaml", f"cannot read {shown!r} as {node.tag}: {e}") from None


def _field_name(loc: Sequence[Any]) -> str:
    parts = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts) or "pack"


def _known_prefix(loc: Sequence[Any], lm: _LineMap) -> tuple[Any, ...]:
    """The part of a pydantic error location that names YAML (plus a missing or extra field name)."""
    loc = tuple(loc)
    for k in range(len(loc), -1, -1):
        if loc[:k] in lm.lines:
            nxt = loc[k] if k < len(loc) else None
            if (
                isinstance(nxt, str)
                and nxt.islower()
                and nxt.isidentifier()
                and nxt not in ("str", "bool", "int")
            ):
                return loc[: k + 1]
            return loc[:k]
    return ()


def _parse_pack(path: Path, text: str, lex: Lexicons | None = None) -> tuple[PackSpec, _LineMap]:
    data, lm = _compose(path, text)
    if not isinstance(data, dict):
        raise RulePackError(path, 1, "pack", "a rule pack must be a mapping")
    try:
        spec = PackSpec.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = _known_prefix(err["loc"], lm)
        raise RulePackError(path, lm.line_for(err["loc"]), _field_name(loc), err["msg"]) from None
    spec = _expand_lexicons(path, spec, lm, lex)
    _check_pack(path, spec, lm)
    return spec, lm


def _expand_terms(items: list[Any], lex: Lexicons | None, where: Callable[[int], tuple[int, str]]) -> list[Any]:
    out: list[Any] = []
    for i, t in enumerate(items):
        raw = t if isinstance(t, str) else t.term
        if isinstance(raw, str) and raw.startswith("@"):
            if lex is None:
                line, fld = where(i)
                raise RulePackError("", line, fld, "lexicon references need a lexicons folder")
            try:
                terms = lex.terms(raw)
            except LexiconError as e:
                line, fld = where(i)
                raise RulePackError("", line, fld, str(e)) from None
            out.extend(terms if isinstance(t, str) else [TermSpec(term=x, mode=t.mode) for x in terms])
        else:
            out.append(t)
    return list(dict.fromkeys(out)) if all(isinstance(x, str) for x in out) else out


def _expand_regex(pattern: str, lex: Lexicons | None) -> str:
    if "{@" not in pattern:
        return pattern
    if lex is None:
        raise LexiconError("lexicon references need a lexicons folder")
    return REGEX_REF_RE.sub(lambda m: lex.regex_alternation(m.group(1), m.group(2)), pattern)


def _expand_lexicons(path: Path, spec: PackSpec, lm: _LineMap, lex: Lexicons | None) -> PackSpec:
    """Replace ``@lexicon.group`` terms and ``{@lexicon.group}`` regex parts by the group's terms."""
    rules: list[RuleSpec] = []
    changed = False
    for ri, r in enumerate(spec.rules):
        base: tuple[Any, ...] = ("rules", ri)

        def where(*sub: Any, _base: tuple[Any, ...] = base) -> Callable[[int], tuple[int, str]]:
            def f(idx: int) -> tuple[int, str]:
                loc = (*_base, *sub, idx)
                return lm.line_for(loc), _field_name(loc)

            return f

        try:
            upd: dict[str, Any] = {
                "terms": _expand_terms(list(r.terms), lex, where("terms")),
                "unless": _expand_terms(list(r.unless), lex, where("unless")),
                "exempt": _expand_terms(list(r.exempt), lex, where("exempt")),
                "require": [
                    _expand_terms(list(g), lex, where("require", gi)) for gi, g in enumerate(r.require)
                ],
                "near": [
                    n.model_copy(
                        update={
                            "a": _expand_terms(list(n.a), lex, where("near", ni, "a")),
                            "b": _expand_terms(list(n.b), lex, where("near", ni, "b")),
                        }
                    )
                    for ni, n in enumerate(r.near)
                ],
            }
            regs = []
            for key in ("regex", "exempt_regex"):
                pats = []
                for i, pat in enumerate(getattr(r, key)):
                    try:
                        pats.append(_expand_regex(pat, lex))
                    except LexiconError as e:
                        loc = (*base, key, i)
                        raise RulePackError(path, lm.line_for(loc), _field_name(loc), str(e)) from None
                upd[key] = pats
                regs.append(pats)
        except RulePackError as e:
            raise RulePackError(path, e.line, e.field, e.reason) from None
        if any(upd[k] != getattr(r, k) for k in upd):
            changed = True
            rules.append(r.model_copy(update=upd))
        else:
            rules.append(r)
    d = spec.defaults
    dupd: dict[str, Any] = {}
    for key in ("exempt", "unless"):

        def dwhere(idx: int, _key: str = key) -> tuple[int, str]:
            loc = ("defaults", _key, idx)
            return lm.line_for(loc), _field_name(loc)

        try:
            terms = _expand_terms(list(getattr(d, key)), lex, dwhere)
        except RulePackError as e:
            raise RulePackError(path, e.line, e.field, e.reason) from None
        if terms != getattr(d, key):
            dupd[key] = terms
    if dupd:
        spec = spec.model_copy(update={"defaults": d.model_copy(update=dupd)})
    return spec.model_copy(update={"rules": rules}) if changed else spec


# ---------------------------------------------------------------- regex safety


def expand_macros(pattern: str) -> str:
    for k, v in MACROS.items():
        pattern = pattern.replace(k, v)
    return pattern


_REPEATS = (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, sre_constants.POSSESSIVE_REPEAT)


def _first_set(items: list[tuple[Any, Any]]) -> set[Any] | None:
    """Characters a sequence can start with, or None when unknown or anything."""
    out: set[Any] = set()
    for op, av in items:
        if op is sre_constants.LITERAL:
            out.add(av)
            return out
        if op is sre_constants.IN:
            for iop, iav in av:
                if iop is sre_constants.LITERAL:
                    out.add(iav)
                else:
                    return None
            return out
        if op is sre_constants.SUBPATTERN:
            sub = _first_set(list(av[-1]))
            if sub is None:
                return None
            out |= sub
            return out
        if op is sre_constants.BRANCH:
            for alt in av[1]:
                sub = _first_set(list(alt))
                if sub is None:
                    return None
                out |= sub
            return out
        if op in _REPEATS:
            lo, _hi, sub_items = av
            sub = _first_set(list(sub_items))
            if sub is None:
                return None
            out |= sub
            if lo > 0:
                return out
            continue
        if op in (sre_constants.AT, sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            continue
        return None
    return out


def _walk_problems(items: Any, under_repeat: bool) -> str | None:
    for op, av in items:
        if op in _REPEATS:
            _lo, hi, sub = av
            multi = hi is sre_constants.MAXREPEAT or hi > 1
            if multi and under_repeat:
                return "nested quantifier (catastrophic backtracking)"
            if multi:
                for sop, sav in sub:
                    if sop is sre_constants.BRANCH or (
                        sop is sre_constants.SUBPATTERN and any(x is sre_constants.BRANCH for x, _ in sav[-1])
                    ):
                        branch = (
                            sav
                            if sop is sre_constants.BRANCH
                            else next(y for x, y in sav[-1] if x is sre_constants.BRANCH)
                        )
                        firsts = [_first_set(list(alt)) for alt in branch[1]]
                        seen: set[Any] = set()
                        for fs in firsts:
                            if fs is None or (seen & fs):
                                return "quantified alternation whose branches can start alike (catastrophic backtracking)"
                            seen |= fs
            p = _walk_problems(sub, under_repeat or multi)
            if p:
                return p
        elif op is sre_constants.SUBPATTERN:
            p = _walk_problems(av[-1], under_repeat)
            if p:
                return p
        elif op is sre_constants.BRANCH:
            for alt in av[1]:
                p = _walk_problems(alt, under_repeat)
                if p:
                    return p
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            p = _walk_problems(av[1], under_repeat)
            if p:
                return p
        elif op in (sre_constants.GROUPREF, sre_constants.GROUPREF_EXISTS):
            return "backreferences are not allowed"
    return None


@functools.cache
def compile_expanded(expanded: str) -> re.Pattern[str]:
    """`re.compile` for a rule regex (macros already expanded), once per pattern: the packs hold more
    regexes than `re`'s own cache keeps, and loading checks, compiles and analyses each of them."""
    return re.compile(expanded)


@functools.cache
def _parse_expanded(expanded: str) -> Any:
    """`sre_parse.parse`, once per pattern (the result is only read)."""
    return sre_parse.parse(expanded)


def regex_problem(pattern: str) -> str | None:
    """Why `pattern` (macros allowed) must be rejected, or None when it is safe to run."""
    expanded = expand_macros(pattern)
    try:
        compiled = compile_expanded(expanded)
        parsed = _parse_expanded(expanded)
    except re.error as e:
        return f"invalid regular expression: {e}"
    problem = _walk_problems(parsed, False) or polynomial_problem(parsed)
    if problem:
        return problem
    if compiled.search("") is not None:
        return "matches the empty string"
    for lit in _all_literal_runs(parsed):
        for ch in lit:
            norm = normalize_term(ch)
            if norm and norm != ch:
                return (
                    f"literal {ch!r} in {lit!r} is not in normalized form (write {norm!r}); "
                    "regexes run on normalized text"
                )
    return None


def _all_literal_runs(items: Any) -> Iterator[str]:
    run: list[str] = []
    for op, av in items:
        if op is sre_constants.LITERAL:
            run.append(chr(av))
            continue
        if run:
            yield "".join(run)
            run = []
        if op is sre_constants.SUBPATTERN:
            yield from _all_literal_runs(av[-1])
        elif op is sre_constants.BRANCH:
            for alt in av[1]:
                yield from _all_literal_runs(alt)
        elif op in _REPEATS:
            yield from _all_literal_runs(av[2])
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            yield from _all_literal_runs(av[1])
    if run:
        yield "".join(run)


_MAX_PRODUCT = 64  # most literal strings one trigger set may hold


def _exact_strings(items: list[tuple[Any, Any]]) -> list[str] | None:
    """Every string this sequence can match, when it is made only of literals, small character
    classes and alternations of such (``(穷|丑)鬼``); None otherwise or when there are too many."""
    out = [""]
    for op, av in items:
        if op is sre_constants.LITERAL:
            out = [x + chr(av) for x in out]
        elif op is sre_constants.IN and all(iop is sre_constants.LITERAL for iop, _ in av):
            out = [x + chr(c) for x in out for _, c in av]
        elif op is sre_constants.SUBPATTERN:
            sub = _exact_strings(list(av[-1]))
            if sub is None:
                return None
            out = [x + y for x in out for y in sub]
        elif op is sre_constants.BRANCH:
            alts = [_exact_strings(list(alt)) for alt in av[1]]
            if any(a is None for a in alts):
                return None
            out = [x + y for x in out for a in alts for y in a]  # type: ignore[union-attr]
        else:
            return None
        if len(out) > _MAX_PRODUCT:
            return None
    return out


def _seq_required(items: list[tuple[Any, Any]]) -> list[str] | None:
    """Literals of which at least one must occur in any match of this sequence; None if unknown.

    Adjacent mandatory parts that are literals or alternations of literals combine into one set of
    longer strings (``(穷|丑|胖)(鬼|狗)`` gives 穷鬼, 穷狗, ...), so a regex whose parts are single
    characters still gets a selective trigger instead of running on every line.
    """
    best: list[str] | None = None
    run: list[str] = [""]

    def consider(cands: list[str] | None) -> None:
        nonlocal best
        if not cands or not all(cands):
            return
        cands = list(dict.fromkeys(cands))
        score = min(len(c) for c in cands)
        if (
            best is None
            or score > min(len(c) for c in best)
            or (score == min(len(c) for c in best) and len(cands) < len(best))
        ):
            best = cands

    def flush() -> None:
        nonlocal run
        consider(run)
        run = [""]

    for op, av in items:
        exact = _exact_strings([(op, av)])
        if exact is not None and all(exact):
            product = [x + y for x in run for y in exact]
            if len(product) > _MAX_PRODUCT:
                flush()
                product = exact
            run = product
            continue
        flush()
        if op is sre_constants.SUBPATTERN:
            consider(_seq_required(list(av[-1])))
        elif op is sre_constants.BRANCH:
            alts = [_seq_required(list(alt)) for alt in av[1]]
            if all(alts):
                consider([c for a in alts for c in a])  # type: ignore[union-attr]
        elif op in _REPEATS and av[0] >= 1:
            consider(_seq_required(list(av[2])))
    flush()
    return best


def required_literals(pattern: str) -> list[str] | None:
    """Literals one of which every match contains (used to trigger the regex cheaply), or None."""
    parsed = _parse_expanded(expand_macros(pattern))
    return _seq_required(list(parsed))


def _seq_groups(items: list[tuple[Any, Any]], out: list[list[str]]) -> None:
    """Append to `out` every literal set `_seq_required` weighs for this sequence: each one holds a
    literal that every match of the sequence contains (runs of adjacent literal parts, and the sets of
    mandatory groups, repeats and alternations, recursively)."""
    run: list[str] = [""]

    def add(cands: list[str] | None) -> None:
        if cands and all(cands):
            out.append(list(dict.fromkeys(cands)))

    for op, av in items:
        exact = _exact_strings([(op, av)])
        if exact is not None and all(exact):
            product = [x + y for x in run for y in exact]
            if len(product) > _MAX_PRODUCT:
                add(run)
                product = exact
            run = product
            continue
        add(run)
        run = [""]
        if op is sre_constants.SUBPATTERN:
            _seq_groups(list(av[-1]), out)
        elif op is sre_constants.BRANCH:
            alts = [_seq_required(list(alt)) for alt in av[1]]
            if all(alts):
                add([c for a in alts for c in a])  # type: ignore[union-attr]
        elif op in _REPEATS and av[0] >= 1:
            _seq_groups(list(av[2]), out)
    add(run)


def required_literal_groups(pattern: str) -> list[list[str]]:
    """Every set of literals of which every match contains one (a conjunction: a text lacking all the
    literals of any one set cannot match). `required_literals` is one of these sets; empty when none
    is known. Like `required_literals`, the literals bound matches only of case-sensitive patterns."""
    groups: list[list[str]] = []
    _seq_groups(list(_parse_expanded(expand_macros(pattern))), groups)
    unique: dict[frozenset[str], list[str]] = {}
    for g in groups:
        unique.setdefault(frozenset(g), g)
    return list(unique.values())


# ---------------------------------------------------------------- pack checks


def _terms_of(spec: RuleSpec) -> Iterator[tuple[tuple[Any, ...], str]]:
    for i, t in enumerate(spec.terms):
        yield ("terms", i), t if isinstance(t, str) else t.term
    for i, n in enumerate(spec.near):
        for side in ("a", "b"):
            for j, t in enumerate(getattr(n, side)):
                yield ("near", i, side, j), t if isinstance(t, str) else t.term
    for i, group in enumerate(spec.require):
        for j, t in enumerate(group):
            yield ("require", i, j), t if isinstance(t, str) else t.term
    for i, t in enumerate(spec.unless):
        yield ("unless", i), t
    for i, t in enumerate(spec.exempt):
        yield ("exempt", i), t


def _check_pack(path: Path, spec: PackSpec, lm: _LineMap) -> None:
    for ri, rule in enumerate(spec.rules):
        base = ("rules", ri)
        if rule.category is None and spec.category is None:
            raise RulePackError(
                path,
                lm.line_for(base),
                _field_name((*base, "category")),
                "no category here and none on the pack",
            )
        if rule.law is None and spec.law is None:
            raise RulePackError(
                path,
                lm.line_for(base),
                _field_name((*base, "law")),
                "no law reference here and none on the pack",
            )
        for sub, term in _terms_of(rule):
            loc = (*base, *sub)
            if term.count("{n}") > 1:
                raise RulePackError(
                    path, lm.line_for(loc), _field_name(loc), f"term {term!r}: at most one {{n}} per term"
                )
            if not normalize_term(term.replace("{n}", "一")):
                raise RulePackError(
                    path, lm.line_for(loc), _field_name(loc), f"term {term!r} is empty once normalized"
                )
        for key in ("regex", "exempt_regex"):
            for i, pat in enumerate(getattr(rule, key)):
                problem = regex_problem(pat)
                if problem:
                    loc = (*base, key, i)
                    raise RulePackError(path, lm.line_for(loc), _field_name(loc), f"{pat!r}: {problem}")


# ---------------------------------------------------------------- layering


@dataclass(frozen=True, slots=True)
class RuleSource:
    """Where a rule's definition lives."""

    path: Path
    line: int
    pack: str
    layer: int


@dataclass(slots=True)
class EffectiveRule:
    """A rule after pack defaults and overrides were applied."""

    spec: RuleSpec
    category: str
    law: str
    severity: str
    mode: str
    threshold: float
    enabled: bool
    tags: tuple[str, ...]
    sources: tuple[str, ...]
    negation: NegationSpec | None
    exempt: tuple[str, ...]
    source: RuleSource
    unless: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CleanPhrase:
    text: str
    path: Path
    line: int


@dataclass(slots=True)
class LoadedRules:
    """The effective rules of a stack of rule directories."""

    rules: list[EffectiveRule]
    clean: list[CleanPhrase]
    files: list[Path]
    version: str
    errors: list[RulePackError] = field(default_factory=list)


def pack_files(directory: Path) -> list[Path]:
    """The rule packs of one directory, in load order (sorted by name)."""
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


_LAWS_CACHE: dict[tuple[int, int], LawTable] = {}


def _law_table() -> LawTable:
    """The shipped law table, parsed once per version of the file."""
    st = DEFAULT_LAWS.stat()
    key = (st.st_mtime_ns, st.st_size)
    table = _LAWS_CACHE.get(key)
    if table is None:
        table = load_laws(DEFAULT_LAWS)
        _LAWS_CACHE.clear()
        _LAWS_CACHE[key] = table
    return table


_LAW_REF_TOKEN = re.compile(r"^[a-z][a-z0-9_]*(\.(p?[0-9]+))*$")


def resolve_law(text: str, laws: LawTable | None) -> str:
    """A rule's `law:` as shown on alerts. Parts separated by ``;`` that are article ids
    (``adlaw.9.3; aucl.9``) resolve through ``configs/laws.yaml`` to ``广告法(2021修正) 第9条第(三)项;
    反不正当竞争法(2025修订) 第9条``; a part in free text (a site's own wording, or an article the
    table does not hold yet) is kept as written. An id the table lacks is an error."""
    out: list[str] = []
    for part in (p.strip() for p in re.split(r"[;；]", text)):
        if not part:
            continue
        refs = split_refs(part)
        is_ids = bool(refs) and all(
            _LAW_REF_TOKEN.match(r) and ("." in r or (laws is not None and r in laws)) for r in refs
        )
        if not is_ids:
            out.append(part)
            continue
        if laws is None:
            raise LawTableError(f"law ids {refs} need configs/laws.yaml")
        out.append(laws.resolve(refs).display)
    return "; ".join(out) if out else text


def _effective(spec: RuleSpec, pack: PackSpec, src: RuleSource) -> EffectiveRule:
    d = pack.defaults
    if spec.negation is True:
        negation: NegationSpec | None = NegationSpec()
    elif spec.negation is False:
        negation = None
    elif spec.negation is None:
        negation = d.negation
    else:
        negation = spec.negation
    return EffectiveRule(
        spec=spec,
        category=spec.category or pack.category or "",
        law=spec.law or pack.law or "",
        severity=spec.severity,
        mode=spec.mode or d.mode,
        threshold=spec.threshold if spec.threshold is not None else d.threshold,
        enabled=spec.enabled,
        tags=tuple(spec.tags),
        sources=tuple(spec.sources or d.sources),
        negation=negation,
        exempt=tuple(dict.fromkeys([*spec.exempt, *d.exempt])),
        source=src,
        unless=tuple(dict.fromkeys([*spec.unless, *d.unless])),
    )


def _load(dirs: Sequence[Path], collect: bool) -> LoadedRules:
    rules: dict[str, EffectiveRule] = {}
    clean: list[CleanPhrase] = []
    files: list[Path] = []
    errors: list[RulePackError] = []
    digest = hashlib.sha256()

    def fail(err: RulePackError) -> None:
        if not collect:
            raise err
        errors.append(err)

    laws: LawTable | None = None
    if DEFAULT_LAWS.is_file():
        try:
            laws = _law_table()
        except LawTableError as e:
            fail(RulePackError(DEFAULT_LAWS, 1, "laws", str(e)))
        else:
            raw_laws = DEFAULT_LAWS.read_bytes()
            digest.update(f"laws\0{len(raw_laws)}\0".encode())
            digest.update(raw_laws)
    lex: Lexicons | None = None
    lex_dirs = lexicon_dirs([Path(d) for d in dirs])
    if lex_dirs:
        try:
            lex = load_lexicons(lex_dirs, parse=lambda p, t: _compose(p, t)[0])
        except (LexiconError, RulePackError) as e:
            fail(e if isinstance(e, RulePackError) else RulePackError(lex_dirs[0], 0, "lexicon", str(e)))
        else:
            for lpath in lex.files:
                raw = lpath.read_bytes()
                files.append(lpath)
                digest.update(f"lexicon\0{lpath.parent.name}/{lpath.name}\0{len(raw)}\0".encode())
                digest.update(raw)
    for layer, directory in enumerate(dirs):
        directory = Path(directory)
        if not directory.is_dir():
            fail(RulePackError(directory, 0, "dir", "not a directory"))
            continue
        layer_ids: dict[str, Path] = {}
        overrides: list[tuple[Path, PackSpec, _LineMap]] = []
        for path in pack_files(directory):
            try:
                raw = yamlsafe.read_limited(path)
            except yamlsafe.YamlLoadError as e:
                fail(RulePackError(path, e.line, "file", e.reason))
                continue
            files.append(path)
            digest.update(f"{layer}\0{path.name}\0{len(raw)}\0".encode())
            digest.update(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                fail(RulePackError(path, 1, "file", f"not UTF-8: {e}"))
                continue
            try:
                spec, lm = _parse_pack(path, text, lex)
            except RulePackError as e:
                fail(e)
                continue
            for ri, rspec in enumerate(spec.rules):
                if rspec.id in layer_ids:
                    fail(
                        RulePackError(
                            path,
                            lm.line_for(("rules", ri, "id")),
                            f"rules[{ri}].id",
                            f"rule id {rspec.id!r} is already defined in {layer_ids[rspec.id]}",
                        )
                    )
                    continue
                layer_ids[rspec.id] = path
                src = RuleSource(path, lm.line_for(("rules", ri)), spec.pack, layer)
                eff = _effective(rspec, spec, src)
                try:
                    eff.law = resolve_law(eff.law, laws)
                except LawTableError as e:
                    loc: tuple[Any, ...] = ("rules", ri, "law") if rspec.law else ("law",)
                    fail(RulePackError(path, lm.line_for(loc), _field_name(loc), str(e)))
                    continue
                rules[rspec.id] = eff
            for ci, phrase in enumerate(spec.clean):
                clean.append(CleanPhrase(phrase, path, lm.line_for(("clean", ci))))
            if spec.overrides is not None:
                overrides.append((path, spec, lm))
        for path, spec, lm in overrides:
            ov = spec.overrides
            assert ov is not None
            for key, enabled in (("disable", False), ("enable", True)):
                for i, rid in enumerate(getattr(ov, key)):
                    if rid not in rules:
                        fail(
                            RulePackError(
                                path,
                                lm.line_for(("overrides", key, i)),
                                f"overrides.{key}[{i}]",
                                f"unknown rule id {rid!r}",
                            )
                        )
                        continue
                    rules[rid].enabled = enabled
            for rid, patch in ov.patch.items():
                if rid not in rules:
                    fail(
                        RulePackError(
                            path,
                            lm.line_for(("overrides", "patch", rid)),
                            f"overrides.patch.{rid}",
                            f"unknown rule id {rid!r}",
                        )
                    )
                    continue
                r = rules[rid]
                if patch.severity is not None:
                    r.severity = patch.severity
                if patch.threshold is not None:
                    r.threshold = patch.threshold
                if patch.enabled is not None:
                    r.enabled = patch.enabled
                if patch.mode is not None:
                    r.mode = patch.mode
                if patch.law is not None:
                    try:
                        r.law = resolve_law(patch.law, laws)
                    except LawTableError as e:
                        loc = ("overrides", "patch", rid)
                        fail(RulePackError(path, lm.line_for(loc), f"overrides.patch.{rid}.law", str(e)))
                if patch.tags is not None:
                    r.tags = tuple(patch.tags)
    return LoadedRules(list(rules.values()), clean, files, digest.hexdigest()[:16], errors)


def load_rules(dirs: Sequence[Path]) -> LoadedRules:
    """Load and layer the packs of `dirs`; raises the first `RulePackError`."""
    return _load(dirs, collect=False)


def collect_errors(dirs: Sequence[Path]) -> list[RulePackError]:
    """Every loading error of `dirs` (for ``livewatch rules check``)."""
    return _load(dirs, collect=True).errors
