"""Refusing regexes whose backtracking grows polynomially with the line (``a*a*``, ``.*.*x``, eight ``好*``).

Python's `re` backtracks, and a running match cannot be interrupted, so a slow regex must be refused
before it ever runs (the engine's per-line time budget only stops *between* regexes). `detectors.rules`
already refuses the exponential shapes (nested quantifiers, quantified alternations whose branches
start alike, backreferences); this module adds repeated groups whose optional part overlaps the rest
(``(a|aa)*``, which the parser turns into ``(a(?:|a))*``) and refuses the polynomial shapes: two quantifiers that can split
the same run of characters between them, with only optional items (or characters both can consume)
in between. With k such quantifiers a failing line of n characters costs about n^(k+1) steps.

The analysis walks the parsed pattern (`re._parser`) and, in every sequence, keeps the quantifiers
that are still "open" (nothing since them that they could not also have matched). A new quantifier
that can start with a character an open one matches forms a chain:

- two unbounded quantifiers (``*``, ``+``, ``{n,}``) in one chain are refused;
- bounded ones multiply their ranges (``x{0,9}`` counts 10); a chain whose product passes
  `MAX_BOUNDED_PRODUCT` is refused (eight ``好{0,9}`` would be 10^8 tries per start).

An unbounded quantifier next to a small bounded one (``[0-9]+.{0,4}``) costs a constant factor and
is accepted. Character classes with categories (``\\d``, ``\\w``) or negation count as "any character":
the analysis errs on the side of refusing. Case-insensitive flags are ignored (rule regexes run on
lowercased normalized text).
"""

from __future__ import annotations

import re._constants as C
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_BOUNDED_PRODUCT", "polynomial_problem"]

MAX_BOUNDED_PRODUCT = 1000

_REPEATS = (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT)
_ZERO_WIDTH = (C.AT, C.ASSERT, C.ASSERT_NOT)

# A character set: a frozenset of inclusive code point ranges, or None for "any character".
Chars = frozenset[tuple[int, int]] | None
_EMPTY: Chars = frozenset()


def _union(a: Chars, b: Chars) -> Chars:
    if a is None or b is None:
        return None
    return a | b


def _overlap(a: Chars, b: Chars) -> bool:
    if a is None:
        return b is None or bool(b)
    if b is None:
        return bool(a)
    return any(lo <= bhi and blo <= hi for lo, hi in a for blo, bhi in b)


def _subset(a: Chars, b: Chars) -> bool:
    if b is None:
        return True
    if a is None:
        return False
    return all(any(blo <= lo and hi <= bhi for blo, bhi in b) for lo, hi in a)


def _chars(items: Any) -> Chars:
    """Every character a sequence of parsed items can consume."""
    out: Chars = _EMPTY
    for op, av in items:
        if op is C.LITERAL:
            out = _union(out, frozenset({(av, av)}))
        elif op is C.IN:
            for iop, iav in av:
                if iop is C.LITERAL:
                    out = _union(out, frozenset({(iav, iav)}))
                elif iop is C.RANGE:
                    out = _union(out, frozenset({(iav[0], iav[1])}))
                else:  # NEGATE, CATEGORY, ...
                    return None
        elif op is C.SUBPATTERN:
            out = _union(out, _chars(av[-1]))
        elif op is C.BRANCH:
            for alt in av[1]:
                out = _union(out, _chars(alt))
        elif op in _REPEATS:
            out = _union(out, _chars(av[2]))
        elif op in _ZERO_WIDTH:
            continue
        else:  # ANY, NOT_LITERAL, GROUPREF, ...
            return None
        if out is None:
            return None
    return out


@dataclass(eq=False, slots=True)
class _Rep:
    """A quantifier that can repeat (max > 1): what it matches and how many ways it can split a run."""

    chars: Chars
    unbounded: bool
    span: int  # max - min + 1 for bounded ones


@dataclass(slots=True)
class _Open:
    rep: _Rep
    degree: int  # unbounded quantifiers in the chain ending here
    product: int  # product of the bounded spans in the chain
    mid: Chars = field(default=_EMPTY)  # characters consumed since, which the next one must also match


class _Problem(Exception):
    pass


@dataclass(slots=True)
class _Shape:
    heads: list[_Rep]
    tails: list[_Rep]
    nullable: bool
    chars: Chars


def _item(op: Any, av: Any) -> _Shape:
    if op in _REPEATS:
        lo, hi, sub = av
        inner = _seq(sub)
        unbounded = hi is C.MAXREPEAT
        if unbounded or hi > 1:
            _check_body(sub)
            rep = _Rep(inner.chars, unbounded, 0 if unbounded else hi - lo + 1)
            return _Shape([rep], [rep], lo == 0 or inner.nullable, inner.chars)
        return _Shape(inner.heads, inner.tails, lo == 0 or inner.nullable, inner.chars)
    if op is C.SUBPATTERN:
        return _seq(av[-1])
    if op is C.BRANCH:
        shapes = [_seq(alt) for alt in av[1]]
        chars: Chars = _EMPTY
        for s in shapes:
            chars = _union(chars, s.chars)
        return _Shape(
            [h for s in shapes for h in s.heads],
            [t for s in shapes for t in s.tails],
            any(s.nullable for s in shapes),
            chars,
        )
    if op in _ZERO_WIDTH:
        return _Shape([], [], True, _EMPTY)
    return _Shape([], [], False, _chars([(op, av)]))


def _check_body(items: Any) -> None:
    """A repeated body with an optional part that overlaps the rest can split one run many ways:
    ``(a|aa)*`` (parsed as ``(a(?:|a))*``), ``(a?a)+``. (``(ab|a)*`` is unambiguous and accepted.)"""
    flat: list[tuple[Any, Any]] = []
    todo = list(items)
    while todo:  # groups inline: (?:a(?:|a)) is the sequence a, (?:|a)
        op, av = todo.pop(0)
        if op is C.SUBPATTERN:
            todo[0:0] = list(av[-1])
        else:
            flat.append((op, av))
    shapes = [(op, _item(op, av)) for op, av in flat]
    for i, (op, sh) in enumerate(shapes):
        if not sh.nullable or op in _ZERO_WIDTH or sh.chars == _EMPTY:
            continue
        rest: Chars = _EMPTY
        for j, (_op2, other) in enumerate(shapes):
            if j != i:
                rest = _union(rest, other.chars)
        if _overlap(sh.chars, rest):
            raise _Problem(
                "repeated group with an optional part that matches the same characters as the rest "
                "(catastrophic backtracking)"
            )


def _seq(items: Any) -> _Shape:
    open_: list[_Open] = []
    heads: list[_Rep] = []
    tails: list[_Rep] = []
    prefix_nullable = True
    chars: Chars = _EMPTY
    for op, av in items:
        shape = _item(op, av)
        chars = _union(chars, shape.chars)
        if prefix_nullable:
            heads.extend(shape.heads)
        chained: dict[int, tuple[int, int]] = {}
        for h in shape.heads:
            for o in open_:
                if not (_overlap(o.rep.chars, h.chars) and _subset(o.mid, h.chars)):
                    continue
                degree = o.degree + h.unbounded
                product = o.product * (1 if h.unbounded else h.span)
                if degree >= 2:
                    raise _Problem(
                        "adjacent quantifiers can match the same characters "
                        "(polynomial backtracking; make one of them bounded or separate them)"
                    )
                if product > MAX_BOUNDED_PRODUCT:
                    raise _Problem(
                        "adjacent bounded quantifiers can match the same characters with more than "
                        f"{MAX_BOUNDED_PRODUCT} ways to split a run (polynomial backtracking)"
                    )
                best = chained.get(id(h), (0, 0))
                chained[id(h)] = max(best, (degree, product))
        kept: list[_Open] = []
        for o in open_:
            if shape.nullable:
                kept.append(o)
            elif _subset(shape.chars, o.rep.chars):
                kept.append(_Open(o.rep, o.degree, o.product, _union(o.mid, shape.chars)))
        for t in shape.tails:
            degree, product = chained.get(id(t), (int(t.unbounded), 1 if t.unbounded else t.span))
            kept.append(_Open(t, degree, product))
        open_ = kept
        tails = [*tails, *shape.tails] if shape.nullable else list(shape.tails)
        prefix_nullable = prefix_nullable and shape.nullable
    return _Shape(heads, tails, prefix_nullable, chars)


def polynomial_problem(parsed: Any) -> str | None:
    """Why a parsed pattern can backtrack polynomially, or None."""
    try:
        _seq(parsed)
    except _Problem as e:
        return str(e)
    return None
