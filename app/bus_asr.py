"""The ASR stage on the bus, its synchronous part: audio in, lines stored, transcript batches out.

    ingest / `bus publish-audio` ──▶ LW_AUDIO (work queue, lw.audio.<stream_id>, 16 kHz s16le chunks)
                    │ one consumer per stream, bound to the worker holding the stream's lease
                    ▼ (app/bus_asr_run.py)
    ASR worker: a LiveTranscript per broadcast (asr/streaming.py, the monitor's own sliding window);
                the ready windows of all its streams decoded as one batch (asr/batching.py)
                    │ the lines and the ASR watermark stored as the monitor's writer stores them
                    ▼ (LiveStore.store_transcript) + this batch's place, in one transaction
    LW_TRANSCRIPTS (TranscriptMessage, seq 0, 1, 2, ... per broadcast) ──▶ analyze workers

`BusAsr` holds the broadcasts a worker serves (`BroadcastAsr`: the transcript, the clocks, the next
batch `seq`, the audio chunks added and not yet acknowledged). A broadcast is opened from the store
(`open`): ASR resumes at the stored watermark (`asr_done_s`) with the next line index and the last line
as the prompt, exactly as the monitor resumes after a restart, and the last batch stored
(`asr_bus_seq`, `asr_bus_idx`) is rebuilt from the store to be published again (its id makes that a
no-op when it was published before the crash). `decode` runs one pass over each given broadcast's
window, all of them as one batch (`BatchRound`); `commit` stores what a pass committed and returns the
message to publish, or None when there is nothing to tell (the same rule as the monitor's ASR worker:
lines, the end, or the watermark 5 s further).

Delivery: a chunk is acknowledged (by the runner) once the watermark stored and published passed its
end, so after a crash what comes again is exactly the audio not yet transcribed (plus, at worst, chunks
whose acks were lost: their audio is before the stored watermark and is skipped). The store refuses a
batch whose `seq` does not follow the stored one (two workers on one broadcast), and lines are unique
by (broadcast, index): no line is stored twice.

Concurrency contract: `open`, `decode` and `commit` are called from one thread at a time (the runner's
decode thread); `BroadcastAsr.transcript.add_audio`/`finish` may be called from the runner's loop
meanwhile (LiveTranscript's own lock). The transcriber is this object's.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from app.bus_wire import TranscriptMessage
from asr.batching import BatchingWhisper, BatchRound
from asr.streaming import LiveTranscript, StepResult, StreamingOptions
from asr.timing import ArrivalLog, stamp_lines
from asr.types import Transcriber, TranscriptBatch
from store import repo
from store.db import Database
from store.live import LiveStore, next_utterance_index
from store.models import Broadcast, UtteranceRow

__all__ = ["BroadcastAsr", "BusAsr", "Held", "StaleBatch"]

logger = logging.getLogger(__name__)

STORE_EVERY_S = 5.0  # a batch goes out when the watermark moved this far without lines (AsrWorker's rule)


class StaleBatch(Exception):
    """The broadcast's stored batches are not where this worker thought (another worker wrote one)."""


@dataclass(slots=True)
class Held:
    """An audio chunk added to a transcript and not yet acknowledged (the runner's message)."""

    msg: Any
    seq: int
    end_s: float
    final: bool


@dataclass(slots=True)
class BroadcastAsr:
    """A broadcast being transcribed by this worker. Its fields are the worker's."""

    broadcast_id: str
    stream_id: str
    transcript: LiveTranscript
    started_ts: float | None
    source_start_s: float | None
    seq: int  # the next transcript batch's place in the broadcast
    stored_done_s: float
    complete: bool = False  # fully transcribed (stored): later chunks of it are acknowledged and dropped
    held: deque[Held] = field(default_factory=deque)
    next_chunk: int | None = None  # the chunk seq expected next (None: any, just opened)
    republish: TranscriptMessage | None = None  # the last stored batch, to publish again once
    received_end_s: float = 0.0  # end of the newest audio received
    max_lag_s: float = 0.0
    arrivals: ArrivalLog = field(default_factory=ArrivalLog)  # when its chunks came (asr/timing.py)
    decode_ts: tuple[float, float] = (0.0, 0.0)  # wall clock of the last decode round it was in

    def received(self, end_s: float, started_ts: float | None) -> None:
        """Audio up to `end_s` arrived, with the ingest's refined live clock (the earliest told is best)."""
        self.received_end_s = max(self.received_end_s, end_s)
        if started_ts is not None and (self.started_ts is None or started_ts < self.started_ts):
            self.started_ts = started_ts

    def behind_s(self) -> float:
        """Audio received and not yet decoded, in seconds."""
        return max(0.0, self.received_end_s - self.transcript.processed_end_s)


class BusAsr:
    """The broadcasts one ASR worker serves; see the module docstring."""

    def __init__(
        self,
        db: Database,
        opts: StreamingOptions,
        transcriber: Transcriber,
        batching: BatchingWhisper | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.opts = opts
        self.transcriber = transcriber
        self.batching = batching
        self._round = BatchRound(batching) if batching is not None else None
        self.clock = clock
        self.broadcasts: dict[str, BroadcastAsr] = {}
        self.passes = 0
        self.batches = 0  # decode rounds
        self.busy_s = 0.0
        # called after a batch's transaction committed, before it is published (tests kill here)
        self.after_commit: Callable[[TranscriptMessage], None] | None = None

    def close(self) -> None:
        if self._round is not None:
            self._round.close()

    # -- broadcasts ----------------------------------------------------------------------------------

    def open(self, broadcast_id: str, stream_id: str) -> BroadcastAsr | None:
        """The broadcast, resumed from the store where its ASR stands; None when it is not stored yet."""
        known = self.broadcasts.get(broadcast_id)
        if known is not None:
            return known
        with self.db.session() as s:
            b = s.get(Broadcast, broadcast_id)
            if b is None:
                return None
            done_s = float(b.asr_done_s or 0.0)
            index = next_utterance_index(s, broadcast_id)
            last = s.scalar(
                select(UtteranceRow.text)
                .where(UtteranceRow.broadcast_id == broadcast_id, UtteranceRow.source == "speech")
                .order_by(UtteranceRow.idx.desc())
                .limit(1)
            )
            republish = None
            if b.asr_bus_seq is not None:
                lines = [
                    repo.utterance_from_row(r)
                    for r in s.scalars(
                        select(UtteranceRow)
                        .where(
                            UtteranceRow.broadcast_id == broadcast_id,
                            UtteranceRow.source == "speech",
                            UtteranceRow.idx >= (b.asr_bus_idx if b.asr_bus_idx is not None else index),
                        )
                        .order_by(UtteranceRow.idx)
                    )
                ]
                batch = TranscriptBatch(broadcast_id, stream_id, tuple(lines), done_s, bool(b.asr_complete))
                republish = TranscriptMessage(batch, int(b.asr_bus_seq), b.started_ts, b.source_start_s)
            ctx = BroadcastAsr(
                broadcast_id,
                stream_id,
                LiveTranscript(broadcast_id, self.opts, start_s=done_s, first_index=index, prompt=last or ""),
                b.started_ts,
                b.source_start_s,
                seq=0 if b.asr_bus_seq is None else int(b.asr_bus_seq) + 1,
                stored_done_s=done_s,
                complete=bool(b.asr_complete),
                republish=republish,
                received_end_s=done_s,
            )
        self.broadcasts[broadcast_id] = ctx
        if done_s > 0 or republish is not None:
            logger.info(
                "broadcast %s: ASR resumed from the store at %.1f s (line %d, next batch %d)",
                broadcast_id,
                done_s,
                index,
                ctx.seq,
            )
        return ctx

    def drop(self, broadcast_id: str) -> None:
        self.broadcasts.pop(broadcast_id, None)

    def ready(self) -> list[BroadcastAsr]:
        return [a for a in self.broadcasts.values() if not a.complete and a.transcript.wants_pass()]

    def lag_s(self, ctx: BroadcastAsr, now: float | None = None) -> float:
        """How far behind the live edge the transcript is (its wall clock start + what was decoded)."""
        now = self.clock() if now is None else now
        if ctx.started_ts is None:
            return ctx.behind_s()
        return max(0.0, now - ctx.started_ts - ctx.transcript.processed_end_s)

    # -- decoding ------------------------------------------------------------------------------------

    def decode(self, ctxs: Sequence[BroadcastAsr]) -> list[StepResult | BaseException]:
        """One pass over each broadcast's window, decoded as one batch; a pass's failure is its own."""
        t0 = time.perf_counter()
        start_ts = self.clock()
        fns = [lambda c=c: c.transcript.step(self.transcriber) for c in ctxs]
        if self._round is None:
            out: list[StepResult | BaseException] = []
            for fn in fns:
                try:
                    out.append(fn())
                except Exception as e:
                    out.append(e)
        else:
            out = self._round.run(fns)
        took = time.perf_counter() - t0
        end_ts = self.clock()
        for c in ctxs:
            c.decode_ts = (start_ts, end_ts)
        self.passes += len(ctxs)
        self.batches += 1
        self.busy_s += took
        logger.debug("ASR batch of %d window(s) in %.2f s", len(ctxs), took)
        return out

    def commit(self, ctx: BroadcastAsr, res: StepResult) -> TranscriptMessage | None:
        """Store what a pass committed (lines, watermark, the batch's place) and the message to publish;
        None when the pass has nothing to tell yet."""
        final = ctx.transcript.exhausted
        if not (res.utterances or final or res.done_s - ctx.stored_done_s >= STORE_EVERY_S):
            return None
        now = self.clock()
        start_ts, end_ts = ctx.decode_ts
        utts = stamp_lines(
            res.utterances, ctx.arrivals, decode_start_ts=start_ts, decode_end_ts=end_ts, committed_ts=now
        )
        batch = TranscriptBatch(ctx.broadcast_id, ctx.stream_id, utts, res.done_s, final)
        msg = TranscriptMessage(batch, ctx.seq, ctx.started_ts, ctx.source_start_s)
        with self.db.session() as s, s.begin():
            b = s.get(Broadcast, ctx.broadcast_id, with_for_update=True)
            if b is None:
                raise KeyError(ctx.broadcast_id)
            stored = -1 if b.asr_bus_seq is None else int(b.asr_bus_seq)
            if stored != ctx.seq - 1:
                raise StaleBatch(
                    f"broadcast {ctx.broadcast_id}: batch {stored} is stored, this worker is at {ctx.seq}"
                )
            LiveStore.store_transcript(
                s, broadcast_id=ctx.broadcast_id, utterances=utts, done_s=res.done_s, final=final
            )
            b.asr_bus_seq = ctx.seq
            b.asr_bus_idx = utts[0].index if utts else ctx.transcript.next_index
        ctx.seq += 1
        ctx.stored_done_s = res.done_s
        ctx.complete = final
        if self.after_commit is not None:
            self.after_commit(msg)
        return msg
