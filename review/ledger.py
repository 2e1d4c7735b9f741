"""The ledger (台账) export: CSV (UTF-8 with BOM, so Excel reads the Chinese) and XLSX.

Pure writers over `LedgerRow`s (or their values, `review.queries.iter_ledger_values`) and `Statistics`;
safe from any thread. Both stream: `iter_ledger_csv` yields the CSV in pieces as rows arrive,
`write_ledger_xlsx` writes the sheet XML into the zip as rows come (review.xlsx), so a year of alerts
needs no more memory than a day.

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


Line = LedgerRow | Sequence[Any]  # a LedgerRow, or its values in LedgerRow.HEADERS order


def iter_ledger_csv(
    rows: Iterable[Line], *, every: int = 2000, progress: Callable[[int], None] | None = None
) -> Iterator[bytes]:
    """The CSV ledger (UTF-8 with BOM) in pieces of `every` rows; `progress(n)` after each piece.
    `rows` are `LedgerRow`s or their values (`review.queries.iter_ledger_values`, the faster)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    buf.write("\ufeff")
    w.writerow([csv_safe(title) for _, title in LedgerRow.HEADERS])
    writerow = w.writerow
    n = 0
    starts = FORMULA_START
    for r in rows:
        vals = r.values() if isinstance(r, LedgerRow) else r
        writerow([("'" + v if v.startswith(starts) else v) if type(v) is str else v for v in vals])
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


def ledger_csv(rows: Iterable[Line]) -> bytes:
    return b"".join(iter_ledger_csv(rows))


def ledger_xlsx(rows: Iterable[Line], stats: Statistics, title: str) -> bytes:
    out = io.BytesIO()
    write_ledger_xlsx(rows, stats, title, out)
    return out.getvalue()


_WIDTHS = {"seq": 6, "alert_id": 20, "time_local": 20, "text": 48, "law": 32, "note": 32, "manifest_sha256": 66}


def write_ledger_xlsx(
    rows: Iterable[Line],
    stats: Statistics,
    title: str,
    dest: Path | IO[bytes],
    *,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the XLSX ledger (sheet 台账 Ledger, then 统计 Summary) to `dest` as the rows come
    (review.xlsx: bounded memory); returns the number of alert rows. Formula-like text stays text
    (a string cell with the quote prefix)."""
    from review import xlsx

    headers = LedgerRow.HEADERS
    book = xlsx.StreamingWorkbook(dest, large=int(stats.totals.get("alerts", 0) or 0) > 400_000)
    ws = book.sheet("台账 Ledger", widths=[_WIDTHS.get(k, 14) for k, _ in headers], freeze_rows=2)
    ws.append([title], xlsx.TITLE)
    ws.append([t for _, t in headers], xlsx.HEADER)

    def lines() -> Iterator[Sequence[Any]]:
        n = 0
        for r in rows:
            yield r.values() if isinstance(r, LedgerRow) else r
            n += 1
            if progress and n % 5000 == 0:
                progress(n)

    n = ws.append_text_rows(lines())
    if n:
        ws.autofilter = f"A2:{xlsx.column_letter(len(headers))}{n + 2}"

    summary = book.sheet("统计 Summary", widths=[36])
    summary.append(["合计 Totals"], xlsx.BOLD)
    for k in ("alerts", "violations", "confirmed", "escalated", "false_positive", "unreviewed"):
        summary.append([k, stats.totals.get(k, 0)])
    for heading, key, items in (
        ("按日 Per day", "day", stats.per_day),
        ("按类别 Per category", "category", stats.per_category),
        ("按直播间 Per stream", "stream", stats.per_stream),
        ("按规则 Per rule", "rule", stats.per_rule),
    ):
        summary.append([])
        summary.append([heading], xlsx.BOLD)
        summary.append(
            [key, "alerts", "violations", "confirmed", "escalated", "false_positive", "unreviewed", "precision"]
        )
        for it in items:
            summary.append(
                [
                    it[key],
                    it["alerts"],
                    it["violations"],
                    it["confirmed"],
                    it["escalated"],
                    it["false_positive"],
                    it["unreviewed"],
                    None if it["precision"] is None else round(it["precision"], 3),
                ]
            )
    book.close()
    if progress:
        progress(n)
    return n
