"""The repository functions (store/repo.py, store/prices.py) behave the same on SQLite and PostgreSQL:
JSON columns, float epoch timestamps, string ids (as the recorder makes them), byte sizes.

PostgreSQL runs where available (see store_backends.py); otherwise those cases skip with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from store_backends import BACKENDS, backend_url

from alerts.types import Alert, Evidence, EvidenceFile
from asr.types import Utterance, Word
from detectors.types import Detection, PriceClaim
from ingest.recorder import new_broadcast_id
from store.db import Database
from store.models import AlertRow, Broadcast, DetectionRow, EvidenceFileRow, MediaSegmentRow, Stream
from store.prices import (
    SqlPriceHistory,
    import_reference_prices,
    link_claim_alerts,
    list_claims,
    save_claims,
)
from store.repo import alert_payloads, ensure_stream, load_utterances, replace_utterances, save_alert

T0 = 1764000000.123456  # a float epoch with microseconds: must come back bit for bit
STREAM = "douyin_" + "x" * 53  # 60 characters: the longest stream part the recorder keeps in an id


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with backend_url(request.param, tmp_path) as url:
        d = Database(url)
        try:
            yield d
        finally:
            d.dispose()


def add_broadcast(db: Database, *, started_ts: float | None = T0, media_size: int | None = None) -> str:
    broadcast_id = new_broadcast_id(STREAM, T0)
    with db.session() as s, s.begin():
        ensure_stream(s, STREAM, url="https://live.example/room")
        s.add(
            Broadcast(
                id=broadcast_id,
                stream_id=STREAM,
                kind="live",
                source="https://live.example/room",
                started_ts=started_ts,
                media_size=media_size,
                meta={"asr": "base", "n": 1},
                created_ts=T0,
            )
        )
    return broadcast_id


def make_alert(broadcast_id: str, alert_id: str, start_s: float, category: str = "absolute_terms") -> Alert:
    det = Detection(
        rule_id="abs.lowest",
        category=category,
        code="A1",
        severity="high",
        law="广告法第九条",
        source="speech",
        start_s=start_s,
        end_s=start_s + 2.5,
        matched="最低价",
        text="全网最低价 家人们",
        score=97.5,
        mode="pinyin",
        utterance_index=3,
        details={"pinyin": ["zui", "di", "jia"], "window": (1, 2), "ratio": 0.875},
    )
    return Alert(
        alert_id=alert_id,
        broadcast_id=broadcast_id,
        category=category,
        code="A1",
        rule_id="abs.lowest",
        severity="high",
        law="广告法第九条",
        source="speech",
        start_s=start_s,
        end_s=start_s + 2.5,
        text="全网最低价",
        context="家人们 全网最低价 赶紧拍",
        rules_version="rv-1",
        detections=(det,),
        start_ts=T0 + start_s,
    )


def payload_for(alert: Alert) -> dict[str, Any]:
    # key order deliberately not alphabetical: JSON columns must hand it back as written
    return {
        "text": alert.text,
        "alert_id": alert.alert_id,
        "start_ts": alert.start_ts,
        "labels": ["最低价", None, True, 1.5],
        "nested": {"z": 1, "a": {"深": [[]]}},
        "empty": {},
    }


def test_alerts_round_trip_with_json_payloads_and_float_times(db: Database) -> None:
    bid = add_broadcast(db)
    assert len(bid) > 64  # the recorder's ids outgrow VARCHAR(64)
    a1, a2 = make_alert(bid, "a" * 20, 12.25), make_alert(bid, "b" * 20, 3.5, category="price_fraud")
    evidence = Evidence(
        dir=f"evidence/{a1.alert_id}",
        manifest_sha256="f" * 64,
        files=(EvidenceFile("clip.mp4", "clip", "c" * 64, 3_500_000_000),),
    )
    with db.session() as s, s.begin():
        assert save_alert(s, a1, payload_for(a1), evidence, STREAM) is True
        assert save_alert(s, a2, payload_for(a2), None, STREAM) is True
    with db.session() as s, s.begin():
        assert save_alert(s, a1, {"changed": True}, None, STREAM) is False  # already stored: untouched

    with db.session() as s:
        got = alert_payloads(s, broadcast_ids=[bid])
        assert got == [payload_for(a2), payload_for(a1)]  # ordered by start_s
        assert [list(p) for p in got] == [list(payload_for(a2)), list(payload_for(a1))]
        assert got[1]["start_ts"] == T0 + 12.25
        assert alert_payloads(s, stream_id=STREAM, category="price_fraud") == [payload_for(a2)]
        assert alert_payloads(s, broadcast_ids=[bid], limit=1) == [payload_for(a2)]
        assert alert_payloads(s, broadcast_ids=["nope"]) == []

        row = s.get(AlertRow, a1.alert_id)
        assert row is not None and row.broadcast_id == bid and row.start_ts == T0 + 12.25
        assert row.evidence_status == "done" and row.evidence_dir == evidence.dir
        det = s.scalars(select(DetectionRow).where(DetectionRow.alert_id == a1.alert_id)).one()
        assert det.details == {"pinyin": ["zui", "di", "jia"], "window": [1, 2], "ratio": 0.875}
        files = {f.name: f.size for f in s.scalars(select(EvidenceFileRow))}
        assert files == {"clip.mp4": 3_500_000_000, "manifest.json": 0}


def test_utterances_replace_and_load_per_source(db: Database) -> None:
    bid = add_broadcast(db)
    speech = [
        Utterance(
            index=1,
            start_s=5.125,
            end_s=7.0,
            text="今天只要九十九",
            words=(Word("今天", 5.125, 5.5, 0.875), Word("只要九十九", 5.5, 7.0, 0.5)),
            raw_text="今天只要 99",
            avg_logprob=-0.25,
            no_speech_prob=0.0625,
            meta={"pass": 2},
        ),
        Utterance(index=0, start_s=1.0, end_s=2.0, text="家人们", words=(Word("家人们", 1.0, 2.0),)),
    ]
    screen = [
        Utterance(index=0, start_s=1.5, end_s=4.0, text="原价999", source="screen", meta={"box": [1, 2]})
    ]
    with db.session() as s, s.begin():
        replace_utterances(s, bid, "speech", speech)
        replace_utterances(s, bid, "screen", screen)
    with db.session() as s:
        assert load_utterances(s, bid, "speech") == sorted(speech, key=lambda u: u.start_s)
        assert load_utterances(s, bid) == [speech[1], screen[0], speech[0]]
        assert load_utterances(s, bid, "speech")[1].meta == {"pass": 2}
        assert load_utterances(s, bid, "screen")[0].meta == {"box": [1, 2]}

    again = [Utterance(index=0, start_s=9.0, end_s=9.5, text="最后一天")]
    with db.session() as s, s.begin():
        replace_utterances(s, bid, "speech", again)
    with db.session() as s:
        assert load_utterances(s, bid, "speech") == again
        assert load_utterances(s, bid, "screen") == screen


def test_byte_sizes_beyond_32_bits(db: Database) -> None:
    bid = add_broadcast(db, media_size=6_000_000_000)  # a long recording scanned as one file
    with db.session() as s, s.begin():
        s.add(
            MediaSegmentRow(
                broadcast_id=bid,
                seq=0,
                path="seg.ts",
                start_s=0.0,
                duration_s=4.0,
                size=2**31 + 5,
                created_ts=T0,
            )
        )
    with db.session() as s:
        b = s.get(Broadcast, bid)
        assert b is not None and b.media_size == 6_000_000_000 and b.meta == {"asr": "base", "n": 1}
        assert s.scalars(select(MediaSegmentRow.size)).one() == 2**31 + 5
        stream = s.get(Stream, STREAM)
        assert stream is not None and stream.url == "https://live.example/room"


def claim(start_s: float, product: str | None, current: float, **kw: Any) -> PriceClaim:
    return PriceClaim(
        source="speech",
        start_s=start_s,
        end_s=start_s + 2.0,
        text=f"{product}只要{current}",
        reference_price=kw.get("reference"),
        current_price=current,
        product=product,
        conditions=tuple(kw.get("conditions", ())),
        pressure=tuple(kw.get("pressure", ())),
        basis=kw.get("basis"),
    )


def test_price_history_claims_reference_prices_and_listing(db: Database, tmp_path: Path) -> None:
    bid = add_broadcast(db)
    claims = [
        claim(10.0, "面霜", 199.0, reference=999.0, pressure=["最后一天"], conditions=["前100名"]),
        claim(20.5, "精华", 299.0, basis="近七天最低价"),
        claim(3600.0, "面霜", 189.0),
    ]
    alert = make_alert(bid, "c" * 20, 9.5, category="price_fraud")
    with db.session() as s, s.begin():
        save_alert(
            s, alert, payload_for(alert), Evidence(dir="ev/c", files=(), manifest_sha256="0" * 64), STREAM
        )
        rows = save_claims(s, broadcast_id=bid, stream_id=STREAM, started_ts=T0, claims=claims)
        assert [r.ts for r in rows] == [T0 + 10.0, T0 + 20.5, T0 + 3600.0]
        assert link_claim_alerts(s, bid) == 1

    history = SqlPriceHistory(db)
    got = history.claims_for(STREAM, T0 + 10.0, T0 + 3600.0)  # since inclusive, until exclusive
    assert [(h.claim, h.ts) for h in got] == [(claims[0], T0 + 10.0), (claims[1], T0 + 20.5)]
    assert got[0].alert_id == alert.alert_id and got[0].evidence_dir == "ev/c"
    assert got[0].claim.pressure == ("最后一天",) and got[0].claim.conditions == ("前100名",)
    assert [h.claim.current_price for h in history.claims_for(STREAM, 0.0, T0 + 1e6, product="面霜")] == [
        199.0,
        189.0,
    ]
    assert history.claims_for("other", 0.0, T0 + 1e6) == []

    csv_path = tmp_path / "prices.csv"
    csv_path.write_text(
        "商品,价格,日期,来源\n面霜,259,2025-11-20,旗舰店\n面霜 50ml,239.5,2025-11-21,\n", encoding="utf-8"
    )
    assert import_reference_prices(db, csv_path) == (2, 0)
    assert import_reference_prices(db, csv_path) == (0, 2)  # idempotent: float and text keys match again
    known = history.reference_prices("面霜", since_ts=0.0)
    assert [(k.product, k.price, k.source) for k in known] == [
        ("面霜", 259.0, "旗舰店"),
        ("面霜 50ml", 239.5, "prices.csv"),
    ]

    # a claim of a recording without a wall clock (ts NULL) sorts before the timed ones
    other = add_broadcast(db, started_ts=None)
    with db.session() as s, s.begin():
        save_claims(
            s, broadcast_id=other, stream_id=STREAM, started_ts=None, claims=[claim(1.0, "精华", 99.0)]
        )
    listing = list_claims(db, STREAM)
    assert [c.ts for c in listing] == [None, T0 + 10.0, T0 + 20.5, T0 + 3600.0]
    assert listing[1].alert_id == alert.alert_id and listing[1].when.startswith("2025-11-24T16:00:10")
    assert [c.claim.product for c in list_claims(db, STREAM, product="精华")] == ["精华", "精华"]
    assert [c.broadcast_id for c in list_claims(db, STREAM, limit=1)] == [bid]
