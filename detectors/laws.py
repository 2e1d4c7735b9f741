"""Law references as data: the table in ``configs/laws.yaml`` and resolving article ids to citations.

Rules cite articles by id (``aucl.9``, ``adlaw.9.3``, ``trademark.14.p5``) instead of free text. An
article id is ``<law id>.<article>[.p<paragraph (款)>][.<item (项)>]``; a bare law id cites the whole
law. `LawTable.resolve` turns one id, a list of ids, or a string of ids separated by ``;`` (or ``,``,
``、``, whitespace) into a display string such as ``广告法(2021修正) 第9条第(三)项`` plus structured
`Citation`s; unknown ids raise `UnknownLawRefError` naming all of them, and `LawTable.unknown` /
`LawTable.check` report them without raising.

Loading is pure: `load_laws` reads the file and returns a new `LawTable`; every error is a
`LawTableError` whose text is ``path: field: reason``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "DEFAULT_LAWS",
    "Article",
    "Citation",
    "Law",
    "LawTable",
    "LawTableError",
    "Resolution",
    "UnknownLawRefError",
    "load_laws",
    "split_refs",
]

DEFAULT_LAWS = Path(__file__).resolve().parents[1] / "configs" / "laws.yaml"

_ID = r"[a-z][a-z0-9_]*"
_LAW_ID_RE = re.compile(rf"^{_ID}$")
_ARTICLE_ID_RE = re.compile(rf"^({_ID})\.([1-9]\d*)(?:\.p([1-9]\d*))?(?:\.([1-9]\d*))?$")
_SPLIT_RE = re.compile(r"[;；,，、\s]+")
_DIGITS = "零一二三四五六七八九"


class LawTableError(Exception):
    """A law table that cannot be used; the message names file and field."""


class UnknownLawRefError(LawTableError):
    """A reference to ids that are not in the table."""

    def __init__(self, unknown: Sequence[str]) -> None:
        self.unknown = list(unknown)
        super().__init__(f"unknown law reference(s): {', '.join(self.unknown)}")


def _chinese_number(n: int) -> str:
    """1..99 in Chinese numerals, as used for 项 (三, 十, 十二, 二十一)."""
    if not 0 < n < 100:
        return str(n)
    tens, ones = divmod(n, 10)
    if tens == 0:
        return _DIGITS[ones]
    head = "" if tens == 1 else _DIGITS[tens]
    return head + "十" + (_DIGITS[ones] if ones else "")


class Article(BaseModel):
    """One cited article, paragraph (款) or item (项) of a law."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="`<law>.<article>[.p<paragraph>][.<item>]`, e.g. adlaw.9.3.")
    number: int = Field(ge=1, description="Article number (条).")
    paragraph: int | None = Field(None, ge=1, description="Paragraph (款), when one is cited.")
    item: int | None = Field(None, ge=1, description="Item (项), when one is cited.")
    title: str = Field(min_length=1, description="Short title.")
    summary: str = Field(min_length=1, description="What it forbids or requires, close to the text.")
    verified: bool = Field(description="Number and summary were read in the law's source text.")
    note: str = ""

    @model_validator(mode="after")
    def _id_agrees(self) -> Article:
        m = _ARTICLE_ID_RE.match(self.id)
        if m is None:
            raise ValueError(f"article id {self.id!r} is not <law>.<article>[.p<paragraph>][.<item>]")
        parsed = (int(m[2]), int(m[3]) if m[3] else None, int(m[4]) if m[4] else None)
        if parsed != (self.number, self.paragraph, self.item):
            raise ValueError(
                f"article id {self.id!r} does not agree with number={self.number}, "
                f"paragraph={self.paragraph}, item={self.item}"
            )
        return self

    def cite(self) -> str:
        """The article part of a citation: 第9条, 第14条第5款, 第9条第(三)项."""
        text = f"第{self.number}条"
        if self.paragraph is not None:
            text += f"第{self.paragraph}款"
        if self.item is not None:
            text += f"第({_chinese_number(self.item)})项"
        return text


class Law(BaseModel):
    """One law, regulation or rule, in the version the table cites."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=_LAW_ID_RE.pattern, description="Short stable id, e.g. aucl.")
    name: str = Field(min_length=1, description="Full official name.")
    short: str = Field(min_length=1, description="Name shown in citations, e.g. 广告法.")
    version: str = Field(min_length=1, description="Cited version, e.g. 2025修订 or 2022 (year of a rule).")
    document_no: str | None = Field(None, description="Issuing order or document number (文号).")
    adopted: date | None = Field(description="Date the cited version was adopted or promulgated.")
    effective: date | None = Field(description="Date the cited version took effect.")
    source: str | None = Field(description="URL of the text the entries were checked against.")
    official_url: str | None = Field(None, description="Official page as cited elsewhere (not opened).")
    verified: bool = Field(description="Name, version and dates were read in the source text.")
    note: str = ""
    articles: list[Article] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Law:
        for url in (self.source, self.official_url):
            if url is not None and not url.startswith(("https://", "http://")):
                raise ValueError(f"{url!r} is not an http(s) URL")
        if self.verified and self.source is None:
            raise ValueError("a verified law needs a source")
        seen: set[str] = set()
        for art in self.articles:
            if not art.id.startswith(f"{self.id}."):
                raise ValueError(f"article id {art.id!r} does not start with {self.id + '.'!r}")
            if art.id in seen:
                raise ValueError(f"article id {art.id!r} appears twice")
            seen.add(art.id)
        return self

    def label(self) -> str:
        """广告法(2021修正)."""
        return f"{self.short}({self.version})"


class _LawsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    laws: list[Law]

    @field_validator("laws")
    @classmethod
    def _unique_law_ids(cls, laws: list[Law]) -> list[Law]:
        ids = [law.id for law in laws]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"law ids appear twice: {', '.join(dup)}")
        return laws


class Citation(BaseModel):
    """One resolved reference."""

    model_config = ConfigDict(frozen=True)

    ref: str
    law_id: str
    law_name: str
    short_name: str
    version: str
    effective: date | None
    article: Article | None
    verified: bool
    display: str


class Resolution(BaseModel):
    """Everything a reference resolved to; `display` joins the citations with "; "."""

    model_config = ConfigDict(frozen=True)

    display: str
    citations: list[Citation]


def split_refs(ref: str | Sequence[str]) -> list[str]:
    """The ids in ``"adlaw.9.3; aucl.9"`` or ``["adlaw.9.3", "aucl.9"]``, in order, without blanks."""
    parts = [ref] if isinstance(ref, str) else list(ref)
    return [p for part in parts for p in _SPLIT_RE.split(part) if p]


class LawTable:
    """The loaded table: laws by id and articles by id."""

    def __init__(self, laws: Sequence[Law], path: Path | None = None) -> None:
        self.path = path
        self.laws: dict[str, Law] = {}
        self.articles: dict[str, tuple[Law, Article]] = {}
        for law in laws:
            if law.id in self.laws:
                raise LawTableError(f"{path}: laws: law id {law.id!r} appears twice")
            self.laws[law.id] = law
            for art in law.articles:
                if art.id in self.articles:
                    raise LawTableError(f"{path}: laws: article id {art.id!r} appears twice")
                self.articles[art.id] = (law, art)

    def __contains__(self, ref: object) -> bool:
        return isinstance(ref, str) and (ref in self.articles or ref in self.laws)

    def unknown(self, ref: str | Sequence[str]) -> list[str]:
        """The ids of `ref` that are neither an article nor a law of the table."""
        return [r for r in split_refs(ref) if r not in self]

    def check(self, refs: Iterable[str | Sequence[str]]) -> list[str]:
        """One message per unknown id across `refs` (empty when all resolve)."""
        return [f"unknown law reference {r!r} in {ref!r}" for ref in refs for r in self.unknown(ref)]

    def citation(self, ref: str) -> Citation:
        """One id resolved; raises `UnknownLawRefError`."""
        art: Article | None = None
        if ref in self.articles:
            law, art = self.articles[ref]
        elif ref in self.laws:
            law = self.laws[ref]
        else:
            raise UnknownLawRefError([ref])
        return Citation(
            ref=ref,
            law_id=law.id,
            law_name=law.name,
            short_name=law.short,
            version=law.version,
            effective=law.effective,
            article=art,
            verified=art.verified if art is not None else law.verified,
            display=f"{law.label()} {art.cite()}" if art is not None else law.label(),
        )

    def resolve(self, ref: str | Sequence[str]) -> Resolution:
        """Resolve one id or several; raises `UnknownLawRefError` naming every unknown id."""
        ids = split_refs(ref)
        if not ids:
            raise LawTableError("empty law reference")
        missing = [r for r in ids if r not in self]
        if missing:
            raise UnknownLawRefError(missing)
        cites = [self.citation(r) for r in ids]
        return Resolution(display="; ".join(c.display for c in cites), citations=cites)


def _field(loc: Sequence[Any], data: Any) -> str:
    """``laws[3](price).articles[0].id`` from a pydantic location, naming the entries by their id."""
    out = ""
    node = data
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
        if isinstance(part, int) and isinstance(node, dict) and isinstance(node.get("id"), str):
            out += f"({node['id']})"
    return out or "(top)"


def load_laws(path: Path | str = DEFAULT_LAWS) -> LawTable:
    """Read and validate a law table; raises `LawTableError` (``path: field: reason``)."""
    p = Path(path)
    from detectors.yamlsafe import YamlLoadError, load_file

    try:
        data, _root = load_file(p)  # size, depth and alias limits like every YAML livewatch reads
    except OSError as e:
        raise LawTableError(f"{p}: (file): {e.strerror or e}") from e
    except YamlLoadError as e:  # it names the file and line: a date like 2026-13-01, a bomb, bad UTF-8
        raise LawTableError(str(e)) from e
    except (yaml.YAMLError, ValueError) as e:
        raise LawTableError(f"{p}: (yaml): {e}") from e
    if not isinstance(data, dict):
        raise LawTableError(f"{p}: (top): expected a mapping with a 'laws' list")
    try:
        spec = _LawsFile.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise LawTableError(f"{p}: {_field(err['loc'], data)}: {msg}{more}") from e
    return LawTable(spec.laws, p)
