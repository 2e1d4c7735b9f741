"""A small streaming XLSX (SpreadsheetML) writer for the ledger: rows go into the zip as they come.

openpyxl's write-only mode also streams, but builds a cell object per value and writes it through lxml
(about 4k ledger rows a second here); a year of a busy bureau's alerts is 10^6 rows. This writes the
sheet XML as text straight into a deflate stream (inline strings, no shared-string table, so memory
does not grow with the rows), with the few styles the ledger uses: a title, a bold header on a
fill, bold labels, and the "quote prefix" style that keeps formula-like text as text.

Text cells are always strings (`t="inlineStr"`), never formulas; characters XML cannot carry (control
characters) are written as OOXML escapes (`_x000B_`), and text that already looks like such an escape
is protected (`_x005F_`), so every cell reads back exactly as it was. Numbers (int, float) are numbers.
"""

from __future__ import annotations

import math
import re
import zipfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

__all__ = ["BOLD", "HEADER", "PLAIN", "TITLE", "StreamingWorkbook", "column_letter"]

PLAIN, TITLE, HEADER, TEXT, BOLD, TITLE_TEXT = range(6)  # indexes into cellXfs below

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

_NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
_NS_R = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

_STYLES = (
    _HEAD + f"<styleSheet {_NS}>"
    '<fonts count="3">'
    '<font><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    '<font><b/><sz val="13"/><name val="Calibri"/><family val="2"/></font>'
    "</fonts>"
    '<fills count="3"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill>'
    '<fill><patternFill patternType="solid"><fgColor rgb="FFDDE4EE"/><bgColor indexed="64"/></patternFill></fill>'
    "</fills>"
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="6">'
    '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="0" fontId="2" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
    '<xf numFmtId="0" fontId="1" fillId="2" borderId="0" xfId="0" applyFont="1" applyFill="1" applyAlignment="1">'
    '<alignment vertical="top" wrapText="1"/></xf>'
    '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0" quotePrefix="1"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
    '<xf numFmtId="0" fontId="2" fillId="0" borderId="0" xfId="0" applyFont="1" quotePrefix="1"/>'
    "</cellXfs>"
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)

# what XML 1.0 cannot carry, and text that a reader would take for an OOXML escape
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_ESCAPE_LIKE = re.compile("_(x[0-9A-Fa-f]{4}_)")
_ESCAPE_LIKE_B = re.compile(b"_x[0-9A-Fa-f]{4}_")
_CONTROL_B = bytes([*range(0, 9), 11, 12, *range(14, 32)])
_SPACE = " \t\n\u3000"


def column_letter(i: int) -> str:
    """1 → A, 27 → AA."""
    out = ""
    while i > 0:
        i, r = divmod(i - 1, 26)
        out = chr(65 + r) + out
    return out


def _attr(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _text(v: str) -> str:
    if "&" in v or "<" in v or ">" in v or "\r" in v:
        v = v.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    return v


def _ooxml_bytes(xml: str) -> bytes:
    """The XML as UTF-8, control characters written as _xHHHH_ and literal _xHHHH_ protected; markup
    holds neither, so this runs over whole runs of rows at once (the checks are C scans of the bytes)."""
    data = xml.encode("utf-8")
    if _ESCAPE_LIKE_B.search(data):
        xml = _ESCAPE_LIKE.sub(r"_x005F_\1", xml)
        data = xml.encode("utf-8")
    if len(data.translate(None, _CONTROL_B)) != len(data) or "\ufffe" in xml or "\uffff" in xml:
        data = _ILLEGAL.sub(lambda m: f"_x{ord(m.group()):04X}_", xml).encode("utf-8")
    return data


class _Sheet:
    def __init__(self, book: StreamingWorkbook, index: int, name: str, widths: Sequence[float],
                 freeze_rows: int, large: bool) -> None:
        self.name = name
        self.index = index
        self.rows = 0
        self.autofilter: str | None = None
        self._stream = book._zip.open(f"xl/worksheets/sheet{index}.xml", "w", force_zip64=large)
        self._buf: list[str] = []
        self._size = 0
        self._letters = [column_letter(i) for i in range(1, 64)]
        view = ""
        if freeze_rows:
            cell = f"A{freeze_rows + 1}"
            view = (f'<pane ySplit="{freeze_rows}" topLeftCell="{cell}" activePane="bottomLeft" state="frozen"/>'
                    f'<selection pane="bottomLeft" activeCell="{cell}" sqref="{cell}"/>')
        selected = ' tabSelected="1"' if index == 1 else ""
        cols = "".join(
            f'<col min="{i}" max="{i}" width="{w}" customWidth="1"/>' for i, w in enumerate(widths, 1)
        )
        self._write(
            _HEAD + f"<worksheet {_NS} {_NS_R}>"
            f'<sheetViews><sheetView workbookViewId="0"{selected}>{view}</sheetView></sheetViews>'

            '<sheetFormatPr defaultRowHeight="15"/>'
            + (f"<cols>{cols}</cols>" if cols else "")
            + "<sheetData>"
        )

    def _write(self, s: str) -> None:
        self._stream.write(s.encode("utf-8"))

    def _flush(self) -> None:
        if self._buf:
            self._stream.write(_ooxml_bytes("".join(self._buf)))
            self._buf.clear()
            self._size = 0

    def append(self, values: Iterable[Any], style: int | None = None) -> None:
        """One row. `style` for every cell of it (else plain; formula-like text gets the quote prefix)."""
        self.rows += 1
        r = self.rows
        letters = self._letters
        parts = [f'<row r="{r}">']
        for i, v in enumerate(values):
            if v is None or v == "":
                continue
            ref = f"{letters[i]}{r}"
            if type(v) is str:
                s = style
                if v.startswith(FORMULA_START):
                    s = TITLE_TEXT if style == TITLE else TEXT
                st = f' s="{s}"' if s else ""
                parts.append(f'<c r="{ref}"{st} t="inlineStr"><is><t xml:space="preserve">{_text(v)}</t></is></c>')
            elif isinstance(v, bool):
                parts.append(f'<c r="{ref}" t="b"><v>{int(v)}</v></c>')
            elif isinstance(v, int | float) and math.isfinite(v):
                st = f' s="{style}"' if style else ""
                parts.append(f'<c r="{ref}"{st}><v>{v!r}</v></c>')
            else:
                parts.append(f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{_text(str(v))}</t></is></c>')
        parts.append("</row>")
        self._buf.append("".join(parts))
        if len(self._buf) >= 500:
            self._flush()

    def append_text_rows(self, rows: Iterable[Sequence[Any]]) -> int:
        """Many rows of the ledger's kind (str, int, float or None cells, no style but the quote prefix
        where text looks like a formula): the fast path. Returns the number of rows written."""
        letters = self._letters
        r = self.rows
        buf = self._buf
        starts = FORMULA_START
        n = 0
        for values in rows:
            r += 1
            n += 1
            parts = [f'<row r="{r}">']
            add = parts.append
            i = 0
            skipped = False  # a cell left out: the next one says where it is (r="..."), the rest follow on
            for v in values:
                if type(v) is str:
                    if v:
                        at = f' r="{letters[i]}{r}"' if skipped else ""
                        skipped = False
                        style = ' s="3"' if v.startswith(starts) else ""
                        if "&" in v or "<" in v or ">" in v or "\r" in v:
                            v = _text(v)
                        space = ' xml:space="preserve"' if v[0] in _SPACE or v[-1] in _SPACE else ""
                        add(f'<c{at}{style} t="inlineStr"><is><t{space}>{v}</t></is></c>')
                    else:
                        skipped = True
                elif v is None:
                    skipped = True
                else:
                    at = f' r="{letters[i]}{r}"' if skipped else ""
                    skipped = False
                    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                        add(f"<c{at}><v>{v!r}</v></c>")
                    else:
                        add(f'<c{at} t="inlineStr"><is><t xml:space="preserve">{_text(str(v))}</t></is></c>')
                i += 1
            add("</row>")
            buf.append("".join(parts))
            if len(buf) >= 500:
                self.rows = r
                self._flush()
        self.rows = r
        self._flush()
        return n

    def close(self) -> None:
        self._flush()
        tail = "</sheetData>"
        if self.autofilter:
            tail += f'<autoFilter ref="{self.autofilter}"/>'
        self._write(tail + "</worksheet>")
        self._stream.close()


class StreamingWorkbook:
    """Sheets written one after another (each one closed before the next is made), then `close()`.

    `large=True` writes the sheets as Zip64 entries (needed past 2 GiB of sheet XML, about 10^6 ledger
    rows; Excel and LibreOffice read both)."""

    def __init__(self, dest: Path | IO[bytes], *, large: bool = False, compresslevel: int = 1) -> None:
        self._zip = zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel)
        self._sheets: list[_Sheet] = []
        self._open: _Sheet | None = None
        self._large = large

    def sheet(self, name: str, *, widths: Sequence[float] = (), freeze_rows: int = 0) -> _Sheet:
        if self._open is not None:
            self._open.close()
        s = _Sheet(self, len(self._sheets) + 1, name, widths, freeze_rows, self._large)
        self._sheets.append(s)
        self._open = s
        return s

    def close(self) -> None:
        if self._open is not None:
            self._open.close()
            self._open = None
        z = self._zip
        n = len(self._sheets)
        sheets = "".join(
            f'<sheet name="{_attr(s.name)}" sheetId="{s.index}" r:id="rId{s.index}"/>' for s in self._sheets
        )
        names = "".join(
            f'<definedName name="_xlnm._FilterDatabase" localSheetId="{s.index - 1}" hidden="1">'
            f"{_attr(_sheet_ref(s.name, s.autofilter))}</definedName>"
            for s in self._sheets
            if s.autofilter
        )
        z.writestr(
            "xl/workbook.xml",
            _HEAD + f"<workbook {_NS} {_NS_R}><workbookPr/>"
            '<bookViews><workbookView activeTab="0"/></bookViews>'
            f"<sheets>{sheets}</sheets>" + (f"<definedNames>{names}</definedNames>" if names else "") + "</workbook>",
        )
        rels = "".join(
            f'<Relationship Id="rId{i}" Type="{_REL}/worksheet" Target="worksheets/sheet{i}.xml"/>'
            for i in range(1, n + 1)
        )
        rels += f'<Relationship Id="rId{n + 1}" Type="{_REL}/styles" Target="styles.xml"/>'
        z.writestr(
            "xl/_rels/workbook.xml.rels",
            _HEAD + '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f"{rels}</Relationships>",
        )
        z.writestr("xl/styles.xml", _STYLES)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        z.writestr(
            "docProps/core.xml",
            _HEAD + '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/'
            'core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/'
            'terms/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><dc:creator>livewatch</dc:creator>'
            f'<dcterms:created xsi:type="dcterms:W3CDTF">{now}</dcterms:created></cp:coreProperties>',
        )
        z.writestr(
            "docProps/app.xml",
            _HEAD + '<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties">'
            "<Application>livewatch</Application></Properties>",
        )
        overrides = "".join(
            f'<Override PartName="/xl/worksheets/sheet{i}.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            for i in range(1, n + 1)
        )
        z.writestr(
            "[Content_Types].xml",
            _HEAD + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            f"{overrides}"
            '<Override PartName="/xl/styles.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
            '<Override PartName="/docProps/core.xml" '
            'ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
            '<Override PartName="/docProps/app.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.extended-properties+xml"/>'
            "</Types>",
        )
        z.writestr(
            "_rels/.rels",
            _HEAD + '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
            'officeDocument" Target="xl/workbook.xml"/>'
            '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/'
            'core-properties" Target="docProps/core.xml"/>'
            '<Relationship Id="rId3" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
            'extended-properties" Target="docProps/app.xml"/>'
            "</Relationships>",
        )
        z.close()


def _sheet_ref(name: str, ref: str | None) -> str:
    a, _, b = (ref or "").partition(":")

    def absolute(cell: str) -> str:
        m = re.fullmatch(r"([A-Z]+)(\d+)", cell)
        return f"${m.group(1)}${m.group(2)}" if m else cell

    quoted = "'" + name.replace("'", "''") + "'"
    return f"{quoted}!{absolute(a)}:{absolute(b)}" if b else f"{quoted}!{absolute(a)}"
