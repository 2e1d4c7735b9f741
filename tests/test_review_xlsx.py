"""The streaming XLSX writer behind the ledger export (review.xlsx): every cell reads back as written."""

from __future__ import annotations

import io
import zipfile

from openpyxl import load_workbook
from openpyxl.utils.escape import unescape

from review.ledger import ledger_xlsx
from review.queries import LedgerRow, Statistics
from review.xlsx import StreamingWorkbook, column_letter

AWKWARD = [
    "plain 中文",
    "a < b & c > d",
    "  leading and trailing  ",
    "line\nbreak",
    "carriage\rreturn",
    "\r=1+1",
    "bell\x07 and vertical tab\x0b",
    "_x0041_ looks like an escape",
    "quote \" and apostrophe '",
    "全角\u3000空格\u3000",
]


def test_cells_read_back_exactly_and_empty_cells_keep_the_columns_in_place() -> None:
    out = io.BytesIO()
    book = StreamingWorkbook(out)
    ws = book.sheet("S <1>", widths=[10, 20], freeze_rows=1)
    ws.append(["head"], 2)
    rows = [[i, text, None, "", text, 1.5, None] for i, text in enumerate(AWKWARD)]
    assert ws.append_text_rows(rows) == len(rows)
    ws.autofilter = f"A1:G{len(rows) + 1}"
    book.sheet("second").append(["x", 2])
    book.close()
    wb = load_workbook(io.BytesIO(out.getvalue()))
    sheet = wb["S <1>"]
    assert sheet.freeze_panes == "A2"
    for r, (i, text, *_rest) in enumerate(rows, 2):
        # characters XML cannot hold are OOXML escapes (_x0007_), which Excel and LibreOffice decode
        got = [unescape(v) if isinstance(v, str) else v for v in (sheet.cell(r, c).value for c in range(1, 8))]
        assert got == [i, text, None, None, text, 1.5, None], (r, got)
    assert wb["second"]["B1"].value == 2
    with zipfile.ZipFile(io.BytesIO(out.getvalue())) as z:
        assert z.testzip() is None
        xml = z.read("xl/worksheets/sheet1.xml")
        assert b"<f>" not in xml and b"_x0007_" in xml and b"_x005F_x0041_" in xml


def test_ledger_xlsx_takes_rows_or_their_values() -> None:
    row = LedgerRow(
        seq=1, alert_id="a1", time_local="2024-05-01 20:00:00", stream_id="", broadcast_id="b1",
        moment="00:01:02.0-00:01:05.0", category="false_claim", category_name="虚假宣传", code="A1",
        rule="r.1", severity="high", source="speech", text="@SUM(1)", law="", status="unreviewed",
        status_name="未审核", reviewer="", decided_local="", note="", manifest_sha256="0" * 64,
    )
    stats = Statistics("Asia/Shanghai", None, None, {"alerts": 2}, [], [], [], [])
    data = ledger_xlsx([row, row.values()], stats, "title")
    ws = load_workbook(io.BytesIO(data))["台账 Ledger"]
    header = [c.value for c in ws[2]]
    for r in (3, 4):
        got = {h: ws.cell(r, i).value for i, h in enumerate(header, 1)}
        assert got["内容 Text"] == "@SUM(1)" and ws.cell(r, header.index("内容 Text") + 1).quotePrefix
        assert got["证据清单 SHA-256 Evidence manifest"] == "0" * 64 and got["直播间 Stream"] is None
    assert ws.auto_filter.ref == f"A2:{column_letter(len(header))}4"


def test_column_letters() -> None:
    assert [column_letter(i) for i in (1, 26, 27, 52, 703)] == ["A", "Z", "AA", "AZ", "AAA"]
