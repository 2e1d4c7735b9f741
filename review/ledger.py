"""The ledger (台账) export: CSV (UTF-8 with BOM, so Excel reads the Chinese) and XLSX (openpyxl).

Pure writers over `LedgerRow`s and `Statistics`; safe from any thread. Both stream: `iter_ledger_csv`
yields the CSV in pieces as rows arrive, `write_ledger_xlsx` writes through openpyxl's write-only
mode (rows go to a temporary file as they come), so a year of alerts needs no more memory than a day.

Spreadsheet (formula) injection: alert text, notes, stream names and rule ids come from a broadcast
or from people, and a cell that starts with ``=``, ``+``, ``-``, ``@``, tab or carriage return is a
formula to Excel and LibreOffice (``=HYPERLINK(...)``, ``@SUM(...)``, DDE). The CSV prefixes such text
cells with ``'`` (the OWASP recommendation; spreadsheets show the text, a script can strip the quote);
the XLSX stores them as string cells with the "quote prefix" style, never as formulas, so the text
reads exactly as spoken. Numbers are written as numbers and are not touched.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from review.queries import LedgerRow, Statistics

__all__ = ["FORMULA_START", "csv_safe", "iter_ledger_csv", "ledger_csv", "ledger_xlsx", "write_ledger_xlsx"]

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> object:
    """A CSV cell value that no spreadsheet runs as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def iter_ledger_csv(
    rows: Iterable[LedgerRow], *, every: int = 500, progress: Callable[[int], None] | None = None
) -> Iterator[bytes]:
    """The CSV ledger (UTF-8 with BOM) in pieces of `every` rows; `progress(n)` after each piece."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    buf.write("\ufeff")
    w.writerow([csv_safe(title) for _, title in LedgerRow.HEADERS])
    n = 0
    starts = FORMULA_START
    for r in rows:
        w.writerow([("'" + v if v.startswith(starts) else v) if type(v) is str else v for v in r.values()])
        n += 1
        if n % every == 0:
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
            if progress:
                progress(n)
    yield buf.getvalue().encode("utf-8")
    if progress:
        progress(n)


def ledger_csv(rows: Iterable[LedgerRow]) -> bytes:
    return b"".join(iter_ledger_csv(rows))


def ledger_xlsx(rows: Iterable[LedgerRow], stats: Statistics, title: str) -> bytes:
    out = io.BytesIO()
    write_ledger_xlsx(rows, stats, title, out)
    return out.getvalue()


_WIDTHS = {"seq": 6, "alert_id": 20, "time_local": 20, "text": 48, "law": 32, "note": 32, "manifest_sha256": 66}


def write_ledger_xlsx(
    rows: Iterable[LedgerRow],
    stats: Statistics,
    title: str,
    dest: Path | IO[bytes],
    *,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the XLSX ledger (sheet 台账 Ledger, then 统计 Summary) to `dest` in openpyxl's write-only
    mode; returns the number of alert rows. Formula-like text stays text (a quote-prefixed string)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("台账 Ledger")
    for i, (key, _) in enumerate(LedgerRow.HEADERS, 1):
        ws.column_dimensions[get_column_letter(i)].width = _WIDTHS.get(key, 14)
    ws.freeze_panes = "A3"

    def text_cells(sheet: Any, values: Sequence[object]) -> list[object]:
        out: list[object] = []
        for v in values:
            if isinstance(v, str) and v.startswith(FORMULA_START):
                cell = WriteOnlyCell(sheet, v)
                cell.data_type = "s"  # openpyxl took it for a formula
                cell.quotePrefix = True
                out.append(cell)
            else:
                out.append(v)
        return out

    head = WriteOnlyCell(ws, title)
    if title.startswith(FORMULA_START):
        head.data_type = "s"
        head.quotePrefix = True
    head.font = Font(bold=True, size=13)
    ws.append([head])
    head_fill = PatternFill("solid", fgColor="DDE4EE")
    header_cells = []
    for _, t in LedgerRow.HEADERS:
        c = WriteOnlyCell(ws, t)
        c.font = Font(bold=True)
        c.fill = head_fill
        c.alignment = Alignment(wrap_text=True, vertical="top")
        header_cells.append(c)
    ws.append(header_cells)
    n = 0
    for r in rows:
        ws.append(text_cells(ws, r.values()))
        n += 1
        if progress and n % 5000 == 0:
            progress(n)
    if n:
        ws.auto_filter.ref = f"A2:{get_column_letter(len(LedgerRow.HEADERS))}{n + 2}"

    summary = wb.create_sheet("统计 Summary")
    summary.column_dimensions["A"].width = 36
    bold = Font(bold=True)

    def bold_row(value: str) -> None:
        c = WriteOnlyCell(summary, value)
        c.font = bold
        summary.append([c])

    bold_row("合计 Totals")
    for k in ("alerts", "violations", "confirmed", "escalated", "false_positive", "unreviewed"):
        summary.append(text_cells(summary, [k, stats.totals.get(k, 0)]))
    for heading, key, items in (
        ("按日 Per day", "day", stats.per_day),
        ("按类别 Per category", "category", stats.per_category),
        ("按直播间 Per stream", "stream", stats.per_stream),
        ("按规则 Per rule", "rule", stats.per_rule),
    ):
        summary.append([])
        bold_row(heading)
        summary.append(
            [key, "alerts", "violations", "confirmed", "escalated", "false_positive", "unreviewed", "precision"]
        )
        for it in items:
            summary.append(
                text_cells(
                    summary,
                    [
                        it[key],
                        it["alerts"],
                        it["violations"],
                        it["confirmed"],
                        it["escalated"],
                        it["false_positive"],
                        it["unreviewed"],
                        None if it["precision"] is None else round(it["precision"], 3),
                    ],
                )
            )
    wb.save(dest)
    if progress:
        progress(n)
    return n
