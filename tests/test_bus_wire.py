"""The bus's wire messages: a transcript batch survives JSON exactly; unknown schemas are refused."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from app.bus_wire import (
    TranscriptMessage,
    WireError,
    audio_subject,
    decode_transcript,
    encode_transcript,
    subject_token,
    transcript_subject,
)
from asr.types import TranscriptBatch
from detectors.evaluate import load_transcript

DATA = Path(__file__).parent / "data"


def _msg(final: bool = False, done_s: float = 12.5) -> TranscriptMessage:
    utts = tuple(load_transcript(DATA / "asr_broadcast_0.json")[:3])
    return TranscriptMessage(TranscriptBatch("b0", "room.1", utts, done_s, final), 7, 1.7e9 + 0.123, 33.25)


def test_transcript_message_round_trip_is_exact() -> None:
    msg = _msg()
    back = decode_transcript(encode_transcript(msg))
    assert back == msg
    assert back.batch.utterances[0].words == msg.batch.utterances[0].words  # times to the last bit
    assert back.batch.utterances[0].raw_text == msg.batch.utterances[0].raw_text
    assert msg.msg_id == "b0:7"


def test_unbounded_watermark_and_no_clocks() -> None:
    msg = TranscriptMessage(TranscriptBatch("b0", "s", (), math.inf, True), 0)
    back = decode_transcript(encode_transcript(msg))
    assert back == msg and back.started_ts is None and back.source_start_s is None


def test_unknown_schema_and_garbage_are_refused() -> None:
    body = json.loads(encode_transcript(_msg()))
    body["schema"] = 99
    with pytest.raises(WireError, match="schema 99"):
        decode_transcript(json.dumps(body).encode())
    with pytest.raises(WireError):
        decode_transcript(b"\xff\x00")
    del body["done_s"]
    body["schema"] = 1
    with pytest.raises(WireError, match="malformed"):
        decode_transcript(json.dumps(body).encode())


def test_subject_tokens() -> None:
    assert transcript_subject("room.1") == "lw.transcripts.room=2E1"
    assert transcript_subject("abc") == "lw.transcripts.abc"
    assert audio_subject("room_1") == "lw.audio.room_1"  # not the same stream as room.1
    assert subject_token("直播间 1") == "=E7=9B=B4=E6=92=AD=E9=97=B4=201"
    assert subject_token("a=b") == "a=3Db"
    assert subject_token("") == "=00"
    ids = ["room.1", "room_1", "room=2E1", "room-1", "直播间", "a b", "a.b", "a*b", "a>b"]
    tokens = [subject_token(i) for i in ids]
    assert len(set(tokens)) == len(ids)  # one to one
    kv_key = re.compile(r"^[-/_=.a-zA-Z0-9]+$")  # JetStream's KV key alphabet (no '.' in a token anyway)
    assert all(kv_key.match(t) and "." not in t for t in tokens)
