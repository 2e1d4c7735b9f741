"""Sourced term libraries (lexicons) that rule packs reference by name.

A lexicon is a YAML file in a ``lexicons/`` directory beside a rules directory (the shipped ones are
``configs/lexicons/``, beside ``configs/rules/``; a site's rules directory may hold its own
``lexicons/`` folder). Each file names its sources and splits its terms into groups::

    lexicon: absolute
    description: 广告法第9条(三) 绝对化用语
    sources:
      s1: {url: "https://...", title: "...", note: "..."}
    groups:
      standalone:
        description: fire on their own
        law: 广告法 第9条(三)
        from: [s1]
        terms: [史上最强, 全网最低价]

A rule refers to a group as ``"@absolute.standalone"`` wherever it lists terms (``terms``, ``near``,
``require``, ``unless``, ``exempt``), and inside a regex as ``{@absolute.standalone}`` (an
alternation of the group's terms, longest first, escaped). A later layer's group of the same name
replaces an earlier one, so a site can extend or trim a shipped lexicon without copying packs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["Lexicon", "LexiconError", "Lexicons", "lexicon_dirs", "load_lexicons"]

_NAME = r"^[a-z][a-z0-9_]*$"
REF_RE = re.compile(r"^@([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)$")
REGEX_REF_RE = re.compile(r"\{@([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\}")
MAX_TERMS_PER_GROUP = 20_000


class LexiconError(Exception):
    """A lexicon that cannot be loaded, or a reference to a missing group."""


class SourceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str = Field(min_length=1, description="Where the list was published (URL or repo path).")
    title: str = Field("", description="The source's name.")
    note: str = Field("", description="What it is and how it was used.")


class GroupSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str = Field("", description="What the group holds; whether it needs context.")
    law: str = Field("", description="The law the group's terms relate to.")
    from_: list[str] = Field(default_factory=list, alias="from", description="Source keys.")
    terms: list[str] = Field(min_length=1, max_length=MAX_TERMS_PER_GROUP, description="The terms.")


class LexiconSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    lexicon: str = Field(pattern=_NAME, description="Lexicon name (the part before the dot).")
    description: str = Field("", description="What the lexicon is.")
    sources: dict[str, SourceSpec] = Field(default_factory=dict, description="Sources by key.")
    groups: dict[str, GroupSpec] = Field(min_length=1, description="Named term groups.")


@dataclass(frozen=True, slots=True)
class Lexicon:
    name: str
    group: str
    terms: tuple[str, ...]
    path: Path
    law: str
    sources: tuple[str, ...]


class Lexicons:
    """Every group of every lexicon in force, by ``name.group``."""

    def __init__(self, groups: dict[str, Lexicon], files: list[Path]) -> None:
        self.groups = groups
        self.files = files

    def terms(self, ref: str) -> tuple[str, ...]:
        m = REF_RE.match(ref)
        if not m:
            raise LexiconError(f"{ref!r} is not a lexicon reference (@lexicon.group)")
        key = f"{m.group(1)}.{m.group(2)}"
        if key not in self.groups:
            known = ", ".join(sorted(self.groups)) or "none loaded"
            raise LexiconError(f"unknown lexicon group {key!r} (known: {known})")
        return self.groups[key].terms

    def regex_alternation(self, name: str, group: str) -> str:
        terms = sorted(set(self.terms(f"@{name}.{group}")), key=lambda t: (-len(t), t))
        return "(?:" + "|".join(re.escape(t) for t in terms) + ")"


def lexicon_dirs(rule_dirs: Sequence[Path]) -> list[Path]:
    """Lexicon folders for a stack of rule directories: ``D/../lexicons`` then ``D/lexicons`` per layer."""
    out: list[Path] = []
    for d in rule_dirs:
        for cand in (Path(d).parent / "lexicons", Path(d) / "lexicons"):
            if cand.is_dir() and cand not in out:
                out.append(cand)
    return out


def load_lexicons(dirs: Sequence[Path], parse: object = None) -> Lexicons:
    """Load every ``*.yaml`` lexicon of `dirs` (later ones replace groups of the same name).

    `parse(path, text)` returns the YAML data (the rule loader passes its safe, line-numbered
    parser so errors read ``path:line: field: reason``); by default `detectors.yamlsafe` (limits on
    aliases, depth and size).
    """

    def _safe_load(path: Path, text: str) -> object:
        from detectors import yamlsafe

        try:
            node = yamlsafe.compose(text, path)
            return None if node is None else yamlsafe.to_python(node, path)
        except yamlsafe.YamlLoadError as e:
            raise LexiconError(str(e)) from None

    groups: dict[str, Lexicon] = {}
    files: list[Path] = []
    for d in dirs:
        for path in sorted(p for p in Path(d).iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()):
            files.append(path)
            st = path.stat()
            key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
            cached = _CACHE.get(key)
            if cached is not None:
                groups.update(cached)
                continue
            text = path.read_text(encoding="utf-8")
            data = parse(path, text) if callable(parse) else _safe_load(path, text)
            try:
                spec = LexiconSpec.model_validate(data)
            except ValidationError as e:
                err = e.errors()[0]
                where = ".".join(str(p) for p in err["loc"])
                raise LexiconError(f"{path}: {where}: {err['msg']}") from None
            mine: dict[str, Lexicon] = {}
            for gname, g in spec.groups.items():
                if not re.match(_NAME, gname):
                    raise LexiconError(f"{path}: groups.{gname}: group names are lowercase identifiers")
                unknown = [s for s in g.from_ if s not in spec.sources]
                if unknown:
                    raise LexiconError(f"{path}: groups.{gname}.from: unknown source keys {unknown}")
                terms = tuple(dict.fromkeys(t.strip() for t in g.terms if t.strip()))
                mine[f"{spec.lexicon}.{gname}"] = Lexicon(spec.lexicon, gname, terms, path, g.law, tuple(g.from_))
            _CACHE[key] = mine
            groups.update(mine)
    return Lexicons(groups, files)


# Parsed lexicon files by (path, mtime, size): rule sets are reloaded often and lexicons are large.
_CACHE: dict[tuple[str, int, int], dict[str, Lexicon]] = {}
