"""`livewatch prices import` and `livewatch prices list`, through the real CLI and a real SQLite store."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from app.cli import app
from asr.fake import utterance_from_text
from detectors.price import extract_from_utterance
from store.db import Database
from store.models import Broadcast
from store.prices import SqlPriceHistory, save_claims

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC).timestamp()


def _seed(data_dir: Path) -> None:
    db = Database.for_data_dir(data_dir)
    try:
        with db.session() as s, s.begin():
            for bid, stream, ts, text in (
                ("b1", "room1", T0, "这个精华液原价九百九十九元,今天直播间只要一百九十九元"),
                ("b2", "room2", T0 + 60, "这款面霜今天只要九十九元"),
            ):
                s.add(
                    Broadcast(
                        id=bid,
                        stream_id=stream,
                        kind="file",
                        source="x",
                        started_ts=ts,
                        created_ts=time.time(),
                    )
                )
                s.flush()
                claims = extract_from_utterance(utterance_from_text(3.0, 8.0, text))
                save_claims(s, broadcast_id=bid, stream_id=stream, started_ts=ts, claims=claims)
    finally:
        db.dispose()


def test_prices_list_table_and_jsonl(tmp_path: Path) -> None:
    _seed(tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["prices", "list", "--data-dir", str(tmp_path), "--stream", "room1"])
    assert res.exit_code == 0, res.output
    assert "精华液" in res.output and "原价 999" in res.output and "只要 199" in res.output
    assert "面霜" not in res.output  # another stream
    assert "2026-03-02 20:00:" in res.output  # shown in Asia/Shanghai
    res = runner.invoke(app, ["prices", "list", "--data-dir", str(tmp_path), "--jsonl"])
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    assert [(r["stream_id"], r["current_price"]) for r in rows] == [("room1", 199), ("room2", 99)]
    assert rows[0]["ts"] > T0 and rows[0]["reference_kind"] == "原价"


def test_prices_import_csv_and_json(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    monkeypatch.setenv("LIVEWATCH_DATA_DIR", str(data))  # no --data-dir: the environment decides
    csv = tmp_path / "prices.csv"
    csv.write_text(
        '商品,价格,日期,来源\n精华液,259,2026-02-20,旗舰店\n面霜,"1,099",2026-02-21,官网\n', encoding="utf-8"
    )
    res = CliRunner().invoke(app, ["prices", "import", str(csv)])
    assert res.exit_code == 0, res.output
    assert "imported 2" in res.output
    js = tmp_path / "more.json"
    js.write_text(json.dumps({"prices": [{"product": "面膜", "price": 39.9, "date": T0}]}), encoding="utf-8")
    assert CliRunner().invoke(app, ["prices", "import", str(js)]).exit_code == 0
    db = Database.for_data_dir(data)
    try:
        got = {(k.product, k.price, k.source) for k in SqlPriceHistory(db).reference_prices(None, 0)}
    finally:
        db.dispose()
    assert got == {("精华液", 259.0, "旗舰店"), ("面霜", 1099.0, "官网"), ("面膜", 39.9, "more.json")}


def test_prices_import_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("product,price,date\n面霜,99,yesterday\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["prices", "import", str(bad), "--data-dir", str(tmp_path / "d")])
    assert res.exit_code == 2
    assert "bad.csv:2: date 'yesterday'" in res.output
    assert "Traceback" not in res.output
    missing = CliRunner().invoke(
        app, ["prices", "import", str(tmp_path / "nope.csv"), "--data-dir", str(tmp_path)]
    )
    assert missing.exit_code == 2 and "no such file" in missing.output
