"""Wire messages of the bus: typed dataclasses ⇄ JSON bytes with a schema version.

`TranscriptMessage` is one `TranscriptBatch` (ASR → analysis) with what the analysis needs besides
the lines: the broadcast's clocks (`started_ts`: wall clock of start_s = 0; `source_start_s`: the
source's own clock at start_s = 0) and `seq`, the batch's place in its broadcast (0, 1, 2, ...),
which the analyze workers use to keep a broadcast's batches in order and to recognise a batch
delivered twice. Subjects are `lw.transcripts.<stream_id>`.

JSON, not pickle: workers of different versions meet on the bus, and a message must say what it is.
A reader refuses a schema version it does not know (`WireError`) rather than guess. Floats survive
the round trip exactly (Python writes the shortest repr); an unbounded watermark is written as
Infinity. Pure functions, no I/O.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from asr.types import TranscriptBatch, Utterance, Word

__all__ = [
    "SCHEMA",
    "TRANSCRIPTS_STREAM",
    "TRANSCRIPTS_SUBJECTS",
    "TranscriptMessage",
    "WireError",
    "decode_transcript",
    "encode_transcript",
    "transcript_subject",
]

SCHEMA = 1
KIND_TRANSCRIPT = "transcript"
TRANSCRIPTS_STREAM = "LW_TRANSCRIPTS"
TRANSCRIPTS_SUBJECTS = "lw.transcripts.>"


class WireError(ValueError):
    """A message that is not one this version reads (unknown schema, kind, or malformed)."""


@dataclass(frozen=True, slots=True)
class TranscriptMessage:
    batch: TranscriptBatch
    seq: int  # the batch's place in its broadcast, from 0
    started_ts: float | None = None
    source_start_s: float | None = None

    @property
    def msg_id(self) -> str:
        """JetStream's de-duplication id: a publisher's retry of the same batch is stored once."""
        return f"{self.batch.broadcast_id}:{self.seq}"


def transcript_subject(stream_id: str) -> str:
    # NATS subject tokens may not hold '.', '*', '>' or spaces; stream ids allow '.' (monitor_config)
    token = stream_id.replace(".", "_") or "_"
    return f"lw.transcripts.{token}"


def _utterance(u: Utterance) -> dict[str, Any]:
    d: dict[str, Any] = {
        "index": u.index,
        "start_s": u.start_s,
        "end_s": u.end_s,
        "text": u.text,
        "words": [[w.text, w.start_s, w.end_s, w.probability] for w in u.words],
        "source": u.source,
        "raw_text": u.raw_text,
        "avg_logprob": u.avg_logprob,
        "no_speech_prob": u.no_speech_prob,
        "compression_ratio": u.compression_ratio,
    }
    if u.meta:
        d["meta"] = u.meta
    return d


def _from_utterance(d: dict[str, Any]) -> Utterance:
    return Utterance(
        index=int(d["index"]),
        start_s=float(d["start_s"]),
        end_s=float(d["end_s"]),
        text=str(d["text"]),
        words=tuple(Word(str(w[0]), float(w[1]), float(w[2]), float(w[3])) for w in d.get("words", ())),
        source=str(d.get("source", "speech")),
        raw_text=str(d.get("raw_text", "")),
        avg_logprob=float(d.get("avg_logprob", 0.0)),
        no_speech_prob=float(d.get("no_speech_prob", 0.0)),
        compression_ratio=float(d.get("compression_ratio", 0.0)),
        meta=dict(d.get("meta") or {}),
    )


def encode_transcript(msg: TranscriptMessage) -> bytes:
    b = msg.batch
    body = {
        "schema": SCHEMA,
        "kind": KIND_TRANSCRIPT,
        "seq": msg.seq,
        "broadcast_id": b.broadcast_id,
        "stream_id": b.stream_id,
        "done_s": b.done_s,
        "final": b.final,
        "started_ts": msg.started_ts,
        "source_start_s": msg.source_start_s,
        "utterances": [_utterance(u) for u in b.utterances],
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_transcript(data: bytes) -> TranscriptMessage:
    try:
        d = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WireError(f"not a JSON message: {e}") from None
    if not isinstance(d, dict):
        raise WireError("not a JSON object")
    if d.get("schema") != SCHEMA or d.get("kind") != KIND_TRANSCRIPT:
        raise WireError(
            f"unknown message schema {d.get('schema')!r} kind {d.get('kind')!r} (this reads {SCHEMA})"
        )
    try:
        done_s = float(d["done_s"])
        if math.isnan(done_s):
            raise ValueError("done_s is NaN")
        batch = TranscriptBatch(
            broadcast_id=str(d["broadcast_id"]),
            stream_id=str(d["stream_id"]),
            utterances=tuple(_from_utterance(u) for u in d["utterances"]),
            done_s=done_s,
            final=bool(d["final"]),
        )
        started = d.get("started_ts")
        src0 = d.get("source_start_s")
        return TranscriptMessage(
            batch,
            int(d["seq"]),
            None if started is None else float(started),
            None if src0 is None else float(src0),
        )
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise WireError(f"malformed transcript message: {type(e).__name__}: {e}") from None
