"""Wire messages of the bus: typed dataclasses ⇄ JSON bytes with a schema version.

`TranscriptMessage` is one `TranscriptBatch` (ASR → analysis) with what the analysis needs besides
the lines: the broadcast's clocks (`started_ts`: wall clock of start_s = 0; `source_start_s`: the
source's own clock at start_s = 0) and `seq`, the batch's place in its broadcast (0, 1, 2, ...),
which the analyze workers use to keep a broadcast's batches in order and to recognise a batch
delivered twice. Subjects are `lw.transcripts.<stream_id>`.

`AudioChunk` is one piece (about 1-2 s) of a broadcast's audio (ingest → ASR): 16 kHz mono PCM, signed
16-bit little-endian, with its broadcast, its place `seq` in the broadcast's chunks (0, 1, 2, ...),
where it starts on the broadcast's clock (`start_s`), its sample rate, and `final` on the last one
(which may be empty). On the wire: one line of JSON (the header, with the schema version), a newline,
then the PCM bytes as they are (32 KB/s; base64 would add a third). Subjects are `lw.audio.<stream_id>`.

`VideoMessage` is one `VideoBatch` (ingest → analysis): what the frames of one recorded file (or the
broadcast's end) gave the monitor's video reader on the ingest box (app/live_video.py): captions
(utterances with source 'screen', with their first and last moment on screen), captions still on screen
(`opening`), visual detections, and the video watermarks. `seq` is the batch's place in its reader's
batches (0, 1, 2, ...), `epoch` names the reader: 0 for the one that began the broadcast, a larger
number for a reader that took the broadcast over (it reads again from the stored video watermark and
numbers from 0). Subjects are `lw.video.<stream_id>`. No pixels travel: video never crosses the bus.

JSON, not pickle: workers of different versions meet on the bus, and a message must say what it is.
A reader refuses a schema version it does not know (`WireError`) rather than guess. Floats survive
the round trip exactly (Python writes the shortest repr); an unbounded watermark is written as
Infinity. Pure functions, no I/O.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import Any

from asr.types import TranscriptBatch, Utterance, Word
from detectors.types import Detection, PriceClaim, VideoBatch

__all__ = [
    "AUDIO_STREAM",
    "AUDIO_SUBJECTS",
    "SCHEMA",
    "TRANSCRIPTS_STREAM",
    "TRANSCRIPTS_SUBJECTS",
    "VIDEO_STREAM",
    "VIDEO_SUBJECTS",
    "AudioChunk",
    "TranscriptMessage",
    "VideoMessage",
    "WireError",
    "audio_subject",
    "decode_audio",
    "decode_transcript",
    "decode_video",
    "encode_audio",
    "encode_transcript",
    "encode_video",
    "stored_ts",
    "subject_token",
    "transcript_subject",
    "video_subject",
]

SCHEMA = 1
KIND_TRANSCRIPT = "transcript"
TRANSCRIPTS_STREAM = "LW_TRANSCRIPTS"
TRANSCRIPTS_SUBJECTS = "lw.transcripts.>"
KIND_AUDIO = "audio"
AUDIO_STREAM = "LW_AUDIO"
AUDIO_SUBJECTS = "lw.audio.>"
KIND_VIDEO = "video"
VIDEO_STREAM = "LW_VIDEO"
VIDEO_SUBJECTS = "lw.video.>"


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


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """A piece of a broadcast's audio: 16-bit mono PCM (little-endian) starting at `start_s`."""

    broadcast_id: str
    stream_id: str
    seq: int  # the chunk's place in its broadcast, from 0
    start_s: float  # on the broadcast's clock
    pcm: bytes
    sample_rate: int = 16_000
    final: bool = False  # the broadcast's last chunk: no audio after it
    # the publisher's best estimate, when it sent the chunk, of the wall clock at start_s = 0 (the
    # ingest refines it from file arrivals as the in-process monitor does); None where it has none
    started_ts: float | None = None

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    @property
    def msg_id(self) -> str:
        """JetStream's de-duplication id: a publisher's retry of the same chunk is stored once."""
        return f"{self.broadcast_id}:a{self.seq}"


@dataclass(frozen=True, slots=True)
class VideoMessage:
    """One video batch of a broadcast (captions, visual detections, watermarks) from an ingest box."""

    batch: VideoBatch
    seq: int  # the batch's place in its reader's batches, from 0
    epoch: int = 0  # the reader: 0 began the broadcast; a takeover's reader has a larger one

    @property
    def msg_id(self) -> str:
        """JetStream's de-duplication id: a publisher's retry of the same batch is stored once."""
        return f"{self.batch.broadcast_id}:v{self.epoch}.{self.seq}"


def stored_ts(msg: Any) -> float | None:
    """When JetStream stored a received message (its publisher's moment, on the server's clock), from the
    message's metadata; None when unknown (not a JetStream message, such as a test's fake)."""
    try:
        return float(msg.metadata.timestamp.timestamp())
    except Exception:
        return None


def subject_token(stream_id: str) -> str:
    """A stream id as one NATS subject token, also valid as a JetStream KV key and in a consumer name.

    Letters, digits, ``_`` and ``-`` stay; every other character (``.``, ``=``, spaces, non-ASCII) becomes
    ``=`` and the hex of its UTF-8 bytes, so the mapping is one to one: ``room.1`` and ``room_1`` are
    different streams on the bus, as they are in the store (``room=2E1`` and ``room_1``).
    """
    out = []
    for c in stream_id:
        if c.isascii() and (c.isalnum() or c in "_-"):
            out.append(c)
        else:
            out.append("".join(f"={b:02X}" for b in c.encode("utf-8")))
    return "".join(out) or "=00"


def transcript_subject(stream_id: str) -> str:
    return f"lw.transcripts.{subject_token(stream_id)}"


def audio_subject(stream_id: str) -> str:
    return f"lw.audio.{subject_token(stream_id)}"


def video_subject(stream_id: str) -> str:
    return f"lw.video.{subject_token(stream_id)}"


def encode_audio(chunk: AudioChunk) -> bytes:
    if len(chunk.pcm) % 2:
        raise WireError("PCM of 16-bit samples has an even number of bytes")
    head = {
        "schema": SCHEMA,
        "kind": KIND_AUDIO,
        "broadcast_id": chunk.broadcast_id,
        "stream_id": chunk.stream_id,
        "seq": chunk.seq,
        "start_s": chunk.start_s,
        "sample_rate": chunk.sample_rate,
        "format": "s16le",
        "final": chunk.final,
    }
    if chunk.started_ts is not None:
        head["started_ts"] = chunk.started_ts
    return json.dumps(head, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n" + chunk.pcm


def decode_audio(data: bytes) -> AudioChunk:
    head, sep, pcm = data.partition(b"\n")
    if not sep:
        raise WireError("not an audio message: no header line")
    try:
        d = json.loads(head.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WireError(f"not an audio message: {e}") from None
    if not isinstance(d, dict) or d.get("schema") != SCHEMA or d.get("kind") != KIND_AUDIO:
        got = (d.get("schema"), d.get("kind")) if isinstance(d, dict) else (None, None)
        raise WireError(f"unknown message schema {got[0]!r} kind {got[1]!r} (this reads {SCHEMA})")
    if d.get("format", "s16le") != "s16le" or len(pcm) % 2:
        raise WireError(f"audio format {d.get('format')!r} with {len(pcm)} bytes is not 16-bit PCM")
    try:
        start_s = float(d["start_s"])
        rate = int(d["sample_rate"])
        if not math.isfinite(start_s) or rate <= 0:
            raise ValueError(f"start_s {start_s}, sample_rate {rate}")
        started = d.get("started_ts")
        started_ts = None if started is None else float(started)
        if started_ts is not None and not math.isfinite(started_ts):
            raise ValueError(f"started_ts {started_ts}")
        return AudioChunk(
            broadcast_id=str(d["broadcast_id"]),
            stream_id=str(d["stream_id"]),
            seq=int(d["seq"]),
            start_s=start_s,
            pcm=pcm,
            sample_rate=rate,
            final=bool(d.get("final", False)),
            started_ts=started_ts,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise WireError(f"malformed audio message: {type(e).__name__}: {e}") from None


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


def _claim(c: PriceClaim | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {f.name: getattr(c, f.name) for f in fields(PriceClaim)}


def _from_claim(d: dict[str, Any] | None) -> PriceClaim | None:
    if d is None:
        return None
    names = {f.name for f in fields(PriceClaim)}
    vals: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
    return PriceClaim(**vals)


def _detection(d: Detection) -> dict[str, Any]:
    out = {f.name: getattr(d, f.name) for f in fields(Detection) if f.name not in ("claim", "details")}
    out["claim"] = _claim(d.claim)
    out["details"] = d.details
    return out


def _from_detection(d: dict[str, Any]) -> Detection:
    idx = d.get("utterance_index")
    return Detection(
        rule_id=str(d["rule_id"]),
        category=str(d["category"]),
        code=str(d["code"]),
        severity=str(d["severity"]),
        law=str(d["law"]),
        source=str(d["source"]),
        start_s=float(d["start_s"]),
        end_s=float(d["end_s"]),
        matched=str(d["matched"]),
        text=str(d["text"]),
        score=float(d.get("score", 100.0)),
        mode=str(d.get("mode", "exact")),
        utterance_index=None if idx is None else int(idx),
        claim=_from_claim(d.get("claim")),
        details=dict(d.get("details") or {}),
    )


def encode_video(msg: VideoMessage) -> bytes:
    b = msg.batch
    body = {
        "schema": SCHEMA,
        "kind": KIND_VIDEO,
        "seq": msg.seq,
        "epoch": msg.epoch,
        "broadcast_id": b.broadcast_id,
        "stream_id": b.stream_id,
        "done_s": b.done_s,
        "final": b.final,
        "resume_s": b.resume_s,
        "captions": [_utterance(u) for u in b.captions],
        "opening": [_utterance(u) for u in b.opening],
        "visual": [_detection(d) for d in b.visual],
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=_plain).encode("utf-8")


def _plain(o: object) -> Any:
    """What a detection's details may hold besides JSON's own types (numpy numbers, tuples)."""
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def decode_video(data: bytes) -> VideoMessage:
    try:
        d = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WireError(f"not a JSON message: {e}") from None
    if not isinstance(d, dict):
        raise WireError("not a JSON object")
    if d.get("schema") != SCHEMA or d.get("kind") != KIND_VIDEO:
        raise WireError(
            f"unknown message schema {d.get('schema')!r} kind {d.get('kind')!r} (this reads {SCHEMA})"
        )
    try:
        done_s = float(d["done_s"])
        resume_s = float(d["resume_s"]) if d.get("resume_s") is not None else done_s
        if math.isnan(done_s) or math.isnan(resume_s):
            raise ValueError("watermark is NaN")
        batch = VideoBatch(
            broadcast_id=str(d["broadcast_id"]),
            stream_id=str(d["stream_id"]),
            captions=tuple(_from_utterance(u) for u in d["captions"]),
            visual=tuple(_from_detection(x) for x in d.get("visual", ())),
            done_s=done_s,
            final=bool(d["final"]),
            resume_s=resume_s,
            opening=tuple(_from_utterance(u) for u in d.get("opening", ())),
        )
        return VideoMessage(batch, int(d["seq"]), int(d.get("epoch", 0)))
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise WireError(f"malformed video message: {type(e).__name__}: {e}") from None
