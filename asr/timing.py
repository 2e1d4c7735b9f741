"""Where a line's latency goes: wall-clock stamps kept with each live line, hop by hop.

A live line (an `Utterance` of a live transcript) carries in its `meta` the moments it passed each hop,
as absolute UTC epoch seconds (`*_ts`), so the store says for every line where the time between "said"
and "alert stored" went, in one process or across the bus:

- `audio_ts`: the audio of the line's end reached the ASR worker (the monitor: its follower decoded it
  from the recorded file; the bus: the ASR worker fetched the chunk holding it);
- `sent_ts`: the bus only, that chunk was stored on the bus by the ingest worker (JetStream's own
  timestamp of the message: the ingest box's publish);
- `decode_start_ts`, `decode_end_ts`: the pass (or batch of passes) that committed the line;
- `committed_ts`: the ASR worker handed the line on (to the store's writer; on the bus, its transaction);
- `published_ts`: the bus only, the transcript batch was stored on the bus (JetStream's timestamp);
- `received_ts`: the analysis took the batch (the monitor: after the writer stored it; the bus: the
  analyze worker fetched it);
- `analyzed_ts`: the line's analysis was committed (with the alerts it raised, in one transaction).

`ArrivalLog` remembers when the audio up to each point of a broadcast's clock arrived, so a line
committed later can be stamped with the arrival of its end. Bookkeeping only, no I/O: a log is written by
the thread that receives the audio and read by the ASR thread, under its own lock.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import replace

from asr.types import Utterance

__all__ = ["HOP_KEYS", "ArrivalLog", "stamp_lines", "with_stamps"]

HOP_KEYS = (
    "sent_ts",
    "audio_ts",
    "decode_start_ts",
    "decode_end_ts",
    "committed_ts",
    "published_ts",
    "received_ts",
    "analyzed_ts",
)


class ArrivalLog:
    """When the audio up to `end_s` arrived (and, on the bus, was sent), for the newest `keep` pieces."""

    def __init__(self, keep: int = 2048) -> None:
        self._lock = threading.Lock()
        self._log: deque[tuple[float, float, float | None]] = deque(maxlen=keep)  # (end_s, arrived, sent)

    def add(self, end_s: float, arrived_ts: float, sent_ts: float | None = None) -> None:
        with self._lock:
            if self._log and end_s <= self._log[-1][0]:
                return  # audio again from before (a redelivery): the first arrival counts
            self._log.append((end_s, arrived_ts, sent_ts))

    def at(self, t_s: float) -> tuple[float, float | None] | None:
        """(arrived, sent) of the first piece whose end is at or after `t_s`; None when none is known."""
        with self._lock:
            i = bisect_left(self._log, t_s - 1e-3, key=lambda e: e[0])
            if i >= len(self._log):
                return None
            _, arrived, sent = self._log[i]
            return arrived, sent


def stamp_lines(
    utterances: Iterable[Utterance],
    arrivals: ArrivalLog | None,
    *,
    decode_start_ts: float,
    decode_end_ts: float,
    committed_ts: float,
) -> tuple[Utterance, ...]:
    """The lines with the ASR side's stamps in their meta (see the module docstring)."""
    out = []
    for u in utterances:
        meta: dict[str, object] = {
            **u.meta,
            "decode_start_ts": round(decode_start_ts, 3),
            "decode_end_ts": round(decode_end_ts, 3),
            "committed_ts": round(committed_ts, 3),
        }
        got = arrivals.at(u.end_s) if arrivals is not None else None
        if got is not None:
            meta["audio_ts"] = round(got[0], 3)
            if got[1] is not None:
                meta["sent_ts"] = round(got[1], 3)
        out.append(replace(u, meta=meta))
    return tuple(out)


def with_stamps(utterances: Iterable[Utterance], stamps: Mapping[str, float]) -> tuple[Utterance, ...]:
    """The lines with `stamps` added to their meta (the analysis side's: `received_ts`, ...)."""
    rounded = {k: round(v, 3) for k, v in stamps.items()}
    return tuple(replace(u, meta={**u.meta, **rounded}) for u in utterances)
