"""The ASR stage's parts without a model or a bus: the audio wire message, cross-window batching of
CTranslate2 calls (asr/batching.py, over a fake model), and the store side of the ASR worker
(app/bus_asr.py, with the scripted transcriber and SQLite): resume and re-publish after a crash."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.bus_asr import BusAsr, StaleBatch
from app.bus_wire import AudioChunk, WireError, audio_subject, decode_audio, encode_audio
from asr.batching import BatchingWhisper, BatchRound
from asr.fake import FakeTranscriber
from asr.streaming import StreamingOptions
from store.db import Database
from store.live import LiveStore
from store.models import Broadcast, UtteranceRow

SOT, SOT_PREV = 50258, 50361

# -- the wire --------------------------------------------------------------------------------------------


def test_audio_chunk_round_trip_and_refusals() -> None:
    pcm = (np.arange(-8, 8, dtype="<i2") * 1000).tobytes()
    chunk = AudioChunk("b0", "room.1", 7, 12.5, pcm, 16_000, final=True)
    back = decode_audio(encode_audio(chunk))
    assert back == chunk and back.end_s == pytest.approx(12.5 + 16 / 16_000)
    assert chunk.msg_id == "b0:a7" and audio_subject("room.1 *") == "lw.audio.room=2E1=20=2A"
    data = encode_audio(chunk)
    with pytest.raises(WireError):
        decode_audio(data.replace(b'"schema":1', b'"schema":9'))
    with pytest.raises(WireError):
        decode_audio(data + b"\x00")  # an odd number of PCM bytes
    with pytest.raises(WireError):
        decode_audio(b"no header")
    # the publisher's live clock travels with the chunk; one that is not a finite number is refused
    timed = dataclasses.replace(chunk, started_ts=1.7e9 + 0.25)
    assert decode_audio(encode_audio(timed)) == timed and back.started_ts is None
    with pytest.raises(WireError, match="started_ts"):
        decode_audio(encode_audio(timed).replace(b"1700000000.25", b"NaN"))


# -- batching --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Result:
    sequences_ids: list[list[int]]


class FakeCT2:
    """A CTranslate2 Whisper stand-in: an item's encoder output carries its features' value; generate
    writes that value as tokens, as many as the value (within the token limit)."""

    device = "cpu"

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.prompts: list[list[list[int]]] = []
        self.lock = threading.Lock()

    def encode(self, features: Any, to_cpu: bool = False) -> Any:
        import ctranslate2

        a = np.asarray(features)
        with self.lock:
            self.calls.append(("encode", a.shape[0]))
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(a[:, :2, :6]))

    def generate(self, enc: Any, prompts: list[list[int]], max_length: int = 448, **kw: Any) -> list[_Result]:
        a = np.asarray(enc)
        assert len({p.index(SOT) for p in prompts}) == 1, prompts  # as CTranslate2 requires
        with self.lock:
            self.calls.append(("generate", a.shape[0]))
            self.prompts.append(prompts)
        out = []
        for i, p in enumerate(prompts):
            v = int(a[i, 0, 0])
            out.append(_Result([[v] * min(v, max_length - len(p))]))
        return out

    def align(self, enc: Any, sot: list[int], tokens: list[list[int]], frames: Any, **kw: Any) -> list[Any]:
        a = np.asarray(enc)
        with self.lock:
            self.calls.append(("align", a.shape[0]))
        frames = frames if isinstance(frames, list) else [frames] * len(tokens)
        return [(int(a[i, 0, 0]), len(tokens[i]), frames[i]) for i in range(len(tokens))]


def _prompt(prev: int) -> list[int]:
    return ([SOT_PREV, *range(100, 100 + prev)] if prev else []) + [SOT, 50260, 50359]


def test_the_calls_of_a_rounds_threads_run_as_one_batched_call_each() -> None:
    ct2 = FakeCT2()
    bw = BatchingWhisper(ct2, sot=SOT, sot_prev=SOT_PREV, pad=220)
    rnd = BatchRound(bw)
    prev = [8, 8, 7, 6]
    budget = [5, 5, 5, 2]  # window 3 makes 3 tokens but may make only 2: decoded again alone

    def window(i: int) -> tuple[list[int], Any]:
        import ctranslate2

        feats = np.full((1, 80, 100 + 10 * i), float(i), dtype=np.float32)
        enc = bw.encode(ctranslate2.StorageView.from_array(feats), to_cpu=False)
        p = _prompt(prev[i])
        res = bw.generate(enc, [p], max_length=len(p) + budget[i], beam_size=1)
        al = bw.align(enc, [SOT, 50260, 50359], [[5] * (i + 1)], 100 + 10 * i, median_filter_width=7)
        return res[0].sequences_ids[0], al[0]

    try:
        out = rnd.run([lambda i=i: window(i) for i in range(4)])
    finally:
        rnd.close()
    assert out == [([], (0, 1, 100)), ([1], (1, 2, 110)), ([2, 2], (2, 3, 120)), ([3, 3], (3, 4, 130))]
    assert ct2.calls == [("encode", 4), ("generate", 4), ("generate", 1), ("align", 4)]
    # a shorter previous text was filled with spaces before it, up to the longest (8 tokens)
    assert {len(p) for p in ct2.prompts[0]} == {1 + 8 + 3}
    prev = sorted(p[1:9] for p in ct2.prompts[0])
    assert prev == sorted(
        [list(range(100, 108))] * 2 + [[220, *range(100, 107)], [220, 220, *range(100, 106)]]
    )
    assert bw.stats.redone == 1 and bw.stats.mean_batch("encode") == 4


def test_a_failing_window_fails_alone_and_a_round_of_one_goes_straight_through() -> None:
    ct2 = FakeCT2()
    bw = BatchingWhisper(ct2, sot=SOT, sot_prev=SOT_PREV, pad=220)
    rnd = BatchRound(bw)

    def window(i: int) -> int:
        import ctranslate2

        if i == 1:
            raise RuntimeError("VAD failed")
        enc = bw.encode(ctranslate2.StorageView.from_array(np.full((1, 80, 50), float(i), np.float32)))
        return bw.generate(enc, [_prompt(0)], max_length=20)[0].sequences_ids[0]

    try:
        out = rnd.run([lambda i=i: window(i) for i in range(3)])
        assert out[0] == [] and isinstance(out[1], RuntimeError) and out[2] == [2, 2]
        assert rnd.run([lambda: window(3)]) == [[3, 3, 3]]
    finally:
        rnd.close()
    assert ct2.calls == [("encode", 2), ("generate", 2), ("encode", 1), ("generate", 1)]


# -- the store side of the ASR worker ------------------------------------------------------------------

LINES = [
    (1.0, 3.0, "家人们晚上好"),
    (5.0, 8.0, "今天只要九十九元"),
    (12.0, 15.0, "最后三单"),
    (21.0, 24.0, "马上下架"),
]


def _db(tmp_path: Path) -> Database:
    db = Database.for_data_dir(tmp_path / "data")
    with db.session() as s, s.begin():
        LiveStore.start_broadcast(
            s, broadcast_id="b0", stream_id="room", url="bus-audio:b0", name="room",
            folder=str(tmp_path / "rec"), started_ts=1.7e9, source_start_s=None, rules_version="",
        )  # fmt: skip
    return db


def _feed(asr: BusAsr, until_s: float, final: bool) -> None:
    ctx = asr.broadcasts["b0"]
    start = ctx.transcript.audio_end_s
    ctx.transcript.add_audio(start, np.zeros(int((until_s - start) * 16_000), dtype=np.float32))
    if final:
        ctx.transcript.finish()


def _run(asr: BusAsr) -> list[Any]:
    msgs = []
    while ready := asr.ready():
        for ctx, res in zip(ready, asr.decode(ready), strict=True):
            assert not isinstance(res, BaseException)
            msg = asr.commit(ctx, res)
            if msg is not None:
                msgs.append(msg)
    return msgs


def test_the_asr_worker_stores_batches_in_order_and_a_successor_resumes_and_republishes(
    tmp_path: Path,
) -> None:
    db = _db(tmp_path)
    try:
        opts = StreamingOptions()
        first = BusAsr(db, opts, FakeTranscriber.from_lines(LINES), None)
        assert first.open("nope", "room") is None  # not stored yet: its audio waits
        assert first.open("b0", "room") is not None
        _feed(first, 18.0, final=False)
        msgs = _run(first)
        assert [m.seq for m in msgs] == list(range(len(msgs))) and msgs
        last = msgs[-1]
        stored = [u.text for m in msgs for u in m.batch.utterances]
        assert stored[:2] == ["家人们晚上好", "今天只要九十九元"]
        first_line = msgs[0].batch.utterances[0].meta  # its hop stamps (asr/timing.py) travel with it
        assert first_line["decode_start_ts"] <= first_line["decode_end_ts"] <= first_line["committed_ts"]
        # the worker dies here (its last batch stored, maybe not published): a successor takes over
        second = BusAsr(db, opts, FakeTranscriber.from_lines(LINES), None)
        ctx = second.open("b0", "room")
        assert ctx is not None and ctx.seq == last.seq + 1
        assert ctx.transcript.done_s == last.batch.done_s and ctx.transcript.next_index == len(stored)
        assert ctx.republish is not None and ctx.republish.msg_id == last.msg_id
        assert [u.text for u in ctx.republish.batch.utterances] == [u.text for u in last.batch.utterances]
        assert ctx.republish.batch.done_s == last.batch.done_s
        # the first worker, still holding the broadcast, cannot store a batch after the successor's
        _feed(second, 26.0, final=True)
        rest = _run(second)
        assert rest[-1].batch.final and [m.seq for m in rest] == list(
            range(last.seq + 1, last.seq + 1 + len(rest))
        )
        _feed(first, 26.0, final=True)
        with pytest.raises(StaleBatch):
            _run(first)
        with db.session() as s:
            texts = [r.text for r in s.query(UtteranceRow).order_by(UtteranceRow.idx)]
            b = s.get(Broadcast, "b0")
            assert b is not None and b.asr_complete and b.asr_bus_seq == rest[-1].seq
        assert texts == [t for _s, _e, t in LINES]  # each line once, in order
    finally:
        db.dispose()


class _Msg:
    """A received audio message, as the runner sees one (no JetStream metadata)."""

    def __init__(self, chunk: AudioChunk) -> None:
        self.data = encode_audio(chunk)
        self.subject = audio_subject(chunk.stream_id)
        self.acked = False

    async def ack(self) -> None:
        self.acked = True

    async def term(self) -> None:
        raise AssertionError("a well-formed chunk was refused")


def test_the_ingests_refined_live_clock_reaches_the_transcript_batches(tmp_path: Path) -> None:
    """The ingest refines a broadcast's start from file arrivals and sends it with each chunk: the ASR
    worker takes the earliest it is told (the store's row at first), and its batches carry it, so the
    analyze worker places alerts on the live clock."""
    import asyncio

    from app.bus_asr_run import AsrRunner, _Stream
    from app.bus_config import BusSection

    db = _db(tmp_path)  # stored started_ts 1.7e9
    try:
        asr = BusAsr(db, StreamingOptions(), FakeTranscriber.from_lines(LINES), None)
        runner = AsrRunner(asr, BusSection(url="nats://127.0.0.1:4222"), name="t")
        pcm = np.zeros(16_000, dtype="<i2").tobytes()

        async def add(seq: int, started_ts: float | None) -> None:
            chunk = AudioChunk("b0", "room", seq, float(seq), pcm, started_ts=started_ts)
            assert await runner._add(_Stream("room", 0), _Msg(chunk))

        asyncio.run(add(0, None))
        ctx = asr.broadcasts["b0"]
        assert ctx.started_ts == 1.7e9  # no estimate sent: the stored row's
        asyncio.run(add(1, 1.7e9 - 2.0))
        assert ctx.started_ts == 1.7e9 - 2.0
        asyncio.run(add(2, 1.7e9 - 1.0))  # a later, worse estimate does not move it back
        assert ctx.started_ts == 1.7e9 - 2.0
        for seq in range(3, 26):
            asyncio.run(add(seq, 1.7e9 - 2.0))
        ctx.transcript.finish()
        msgs = _run(asr)
        assert msgs and {m.started_ts for m in msgs} == {1.7e9 - 2.0}
    finally:
        db.dispose()


def test_on_the_cpu_windows_go_one_at_a_time_and_a_batch_takes_every_ready_stream(
    tmp_path: Path,
) -> None:
    import asyncio
    import time

    from app.bus_asr_run import AsrRunner
    from app.bus_config import BusSection

    db = _db(tmp_path)
    with db.session() as s, s.begin():
        LiveStore.start_broadcast(
            s, broadcast_id="b1", stream_id="room1", url="bus-audio:b1", name="room1",
            folder=str(tmp_path / "rec1"), started_ts=1.7e9 - 5, source_start_s=None, rules_version="",
        )  # fmt: skip
    try:
        asr = BusAsr(db, StreamingOptions(), FakeTranscriber.from_lines(LINES), None)
        for bid, room in (("b0", "room"), ("b1", "room1")):
            ctx = asr.open(bid, room)
            assert ctx is not None
            ctx.transcript.add_audio(0.0, np.zeros(32_000, dtype=np.float32))
        async def gather(wait_ms: int) -> tuple[list[str], float]:
            bus = BusSection(url="nats://127.0.0.1:4222", asr_batch=8, asr_batch_wait_ms=wait_ms)
            runner = AsrRunner(asr, bus, name="t")
            t0 = time.monotonic()
            got = await runner._gather()
            return [c.broadcast_id for c in got], time.monotonic() - t0

        # no batching model (the CPU): the broadcast furthest behind (b1 started earlier), without the
        # batch wait (60 s here: a wait would hang the test)
        ids, _took = asyncio.run(gather(60_000))
        assert ids == ["b1"]
        # batching: after the batch wait, every ready broadcast, furthest behind first
        asr.batching = object()  # type: ignore[assignment]
        ids, took = asyncio.run(gather(200))
        assert ids == ["b1", "b0"] and took >= 0.2
    finally:
        db.dispose()
