"""The ledger (台账) export: CSV (UTF-8 with BOM, so Excel reads the Chinese) and XLSX (openpyxl).

Pure writers over `LedgerRow`s and `Statistics`; safe from any thread.

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
from collections.abc import Sequence
from typing import Any

from review.queries import LedgerRow, Statistics

__all__ = ["FORMULA_START", "csv_safe", "ledger_csv", "ledger_xlsx"]

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> object:
    """A CSV cell value that no spreadsheet runs as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _append_as_text(ws: Any, values: Sequence[object]) -> None:
    """`ws.append`, with every formula-like string kept as a string cell (never a formula)."""
    ws.append(list(values))
    for cell in ws[ws.max_row]:
        if isinstance(cell.value, str) and cell.value.startswith(FORMULA_START):
            cell.data_type = "s"
            cell.quotePrefix = True


def ledger_csv(rows: Sequence[LedgerRow]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([csv_safe(title) for _, title in LedgerRow.HEADERS])
    for r in rows:
        w.writerow([csv_safe(v) for v in r.values()])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def ledger_xlsx(rows: Sequence[LedgerRow], stats: Statistics, title: str) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    assert ws is not None  # a new workbook always has one sheet
    ws.title = "台账 Ledger"
    _append_as_text(ws, [title])
    ws["A1"].font = Font(bold=True, size=13)
    ws.append([t for _, t in LedgerRow.HEADERS])
    head_fill = PatternFill("solid", fgColor="DDE4EE")
    for cell in ws[2]:
        cell.font = Font(bold=True)
        cell.fill = head_fill
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    for r in rows:
        _append_as_text(ws, r.values())
    widths = {
        "seq": 6,
        "alert_id": 20,
        "time_local": 20,
        "text": 48,
        "law": 32,
        "note": 32,
        "manifest_sha256": 66,
    }
    for i, (key, _) in enumerate(LedgerRow.HEADERS, 1):
        ws.column_dimensions[get_column_letter(i)].width = widths.get(key, 14)
    ws.freeze_panes = "A3"
    if rows:
        ws.auto_filter.ref = f"A2:{get_column_letter(len(LedgerRow.HEADERS))}{len(rows) + 2}"

    summary = wb.create_sheet("统计 Summary")
    summary.append(["合计 Totals"])
    summary["A1"].font = Font(bold=True)
    for k in ("alerts", "violations", "confirmed", "escalated", "false_positive", "unreviewed"):
        _append_as_text(summary, [k, stats.totals.get(k, 0)])
    for heading, key, items in (
        ("按日 Per day", "day", stats.per_day),
        ("按类别 Per category", "category", stats.per_category),
        ("按直播间 Per stream", "stream", stats.per_stream),
        ("按规则 Per rule", "rule", stats.per_rule),
    ):
        summary.append([])
        summary.append([heading])
        summary.cell(summary.max_row, 1).font = Font(bold=True)
        summary.append(
            [
                key,
                "alerts",
                "violations",
                "confirmed",
                "escalated",
                "false_positive",
                "unreviewed",
                "precision",
            ]
        )
        for it in items:
            _append_as_text(
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
    summary.column_dimensions["A"].width = 36
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
