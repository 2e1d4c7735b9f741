"""The live analysis worker: transcript and video batches → rules, price checks, grouping → a port.

One `BroadcastAnalyzer` per broadcast (alerts/analyzer.py, the same machine a scan runs), so a live
broadcast raises the same alerts with the same ids as a scan or a replay of its stored transcript.
Each batch gives one `AnalysisResult` (alerts opened or grown, alerts closed, price claims, the
batch's watermark), handed to `AnalysisPort.deliver`; the composition root (app/) stores it in one
transaction through the database's one writer and queues the closed alerts' evidence.

Concurrency contract: `put` may be called from any thread (the database writer's after-commit
callbacks, the video worker, the monitor's resume); it blocks while the queue is full (bounded:
`max_queue` batches), so a stalled analysis slows its producers instead of dropping work. One worker
thread owns every analyzer and the claims kept per broadcast and calls the port; `restore` is for
start-up, before `start`. On `stop` the worker finishes the batch in hand and exits; batches still
queued are analysed again after a restart (the database marks what was analysed).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from alerts.analyzer import SPEECH, VIDEO, BroadcastAnalyzer
from alerts.config import AlertsConfig
from alerts.types import Alert
from asr.types import TranscriptBatch, Utterance
from detectors.price import PriceAnalysis, PriceChecker, analyze_utterances
from detectors.types import Detection, PriceClaim, RuleSet, VideoBatch

__all__ = ["AnalysisPort", "AnalysisResult", "AnalysisWorker"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AnalysisResult:
    """What one batch gave (analysis → the store's writer)."""

    batch: TranscriptBatch | VideoBatch
    alerts: tuple[Alert, ...]  # opened, grown or closed by this batch, as they stand now
    closed: tuple[str, ...]  # ids of alerts nothing can join any more: their evidence may be cut
    new_claims: bool  # the batch found price claims (`claims` is then the broadcast's whole list)
    claims: tuple[PriceClaim, ...]
    started_ts: float | None
    source_start_s: float | None


class AnalysisPort(Protocol):
    """What the worker needs of the rest of the monitor (wired by app/monitor.py)."""

    def rules(self, stream_id: str) -> RuleSet: ...

    def clocks(self, broadcast_id: str) -> tuple[float | None, float | None]:
        """(wall clock of start_s = 0, the source's clock at start_s = 0) of a broadcast."""
        ...

    def stored_claims(self, broadcast_id: str) -> list[PriceClaim]: ...

    def deliver(self, result: AnalysisResult) -> None: ...


class AnalysisWorker:
    def __init__(
        self,
        cfg: AlertsConfig,
        port: AnalysisPort,
        price: PriceChecker,
        *,
        max_queue: int = 10_000,
    ) -> None:
        self.cfg = cfg
        self.port = port
        self.price = price
        self._q: queue.Queue[TranscriptBatch | VideoBatch] = queue.Queue(max_queue)
        self._analyzers: dict[str, BroadcastAnalyzer] = {}
        self._claims: dict[str, list[PriceClaim]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self, guard: Callable[[Callable[[], None]], Callable[[], None]] | None = None) -> None:
        target = guard(self._loop) if guard is not None else self._loop
        self._thread = threading.Thread(target=target, name="analysis", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def put(self, batch: TranscriptBatch | VideoBatch) -> None:
        self._q.put(batch)

    @property
    def backlog(self) -> int:
        return self._q.qsize()

    def restore(self, alert: Alert) -> None:
        """Reopen a stored alert's group after a restart (before `start`)."""
        self._analyzer(alert.broadcast_id).restore(alert)

    def resume(
        self,
        broadcast_id: str,
        alerts: Sequence[Alert],
        context: Sequence[Utterance],
        done_s: float,
        *,
        lane: str = SPEECH,
    ) -> None:
        """Take over a broadcast analysed elsewhere up to `done_s` (another process, or this one before a
        restart; the bus's analyze workers): reopen the groups of its `alerts` that may still grow, then
        give the lines already analysed as context (`context`, in order: not judged again) with the
        watermark, so the next batch groups and words its alerts as the analyzer that began would.
        `lane`: the watermark's lane (VIDEO: the captions read and the video watermark)."""
        an = self._analyzer(broadcast_id)
        for alert in alerts:
            an.restore(alert)
        an.feed(context, done_s, rules=None, lane=lane)  # groups this closes were closed there: nothing to hand on

    # -- the loop -----------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            try:
                batch = self._q.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            self.analyze(batch)

    def _analyzer(self, broadcast_id: str) -> BroadcastAnalyzer:
        an = self._analyzers.get(broadcast_id)
        if an is None:
            an = self._analyzers[broadcast_id] = BroadcastAnalyzer(broadcast_id, self.cfg)
        return an

    def analyze(self, batch: TranscriptBatch | VideoBatch) -> AnalysisResult:
        """One batch through the broadcast's analyzer; the result goes to the port (and is returned)."""
        bid = batch.broadcast_id
        rules = self.port.rules(batch.stream_id)
        started_ts, source_start_s = self.port.clocks(bid)
        an = self._analyzer(bid)
        an.started_ts = started_ts
        video = isinstance(batch, VideoBatch)
        utts = batch.captions if isinstance(batch, VideoBatch) else batch.utterances
        extra: list[Detection] = []
        opening = batch.opening if isinstance(batch, VideoBatch) else ()
        if isinstance(batch, VideoBatch):
            extra.extend(batch.visual)
            if opening:  # captions still on screen: judged now, their claims not kept
                found = self._price_check((), opening, batch, started_ts).detections
                extra.extend(_without_index(d) for d in found)
        price = self._price_check(() if video else utts, utts if video else (), batch, started_ts)
        extra.extend(price.detections)
        claims = self._claims.get(bid)
        if claims is None:
            claims = self._claims[bid] = self.port.stored_claims(bid)
        claims.extend(tc.claim for tc in price.claims)
        step = an.feed(
            utts,
            # the video's watermark for grouping: nothing handed out later appeared before `resume_s`
            min(batch.done_s, batch.resume_s) if isinstance(batch, VideoBatch) else batch.done_s,
            rules=rules,
            lane=VIDEO if video else SPEECH,
            extra=extra,
            final=batch.final,
            judge=opening,
        )
        if batch.final and not video:  # the broadcast's speech is over: nothing more to keep for it
            self._claims.pop(bid, None)
        if an.idle and an.lane_final(SPEECH):
            self._analyzers.pop(bid, None)
        by_id = {a.alert_id: a for a in step.alerts}
        by_id.update({a.alert_id: a for a in step.closed})
        result = AnalysisResult(
            batch,
            tuple(by_id.values()),
            tuple(a.alert_id for a in step.closed),
            bool(price.claims),
            tuple(claims),
            started_ts,
            source_start_s,
        )
        self.port.deliver(result)
        return result

    def _price_check(
        self,
        speech: Sequence[Utterance],
        screen: Sequence[Utterance],
        batch: TranscriptBatch | VideoBatch,
        started_ts: float | None,
    ) -> PriceAnalysis:
        return analyze_utterances(
            speech,
            screen,
            self.price,
            stream_id=batch.stream_id,
            started_ts=started_ts,
            broadcast_id=batch.broadcast_id,
        )


def _without_index(d: Detection) -> Detection:
    """A caption still on screen has no index yet (-1): its alert is anchored by time."""
    return replace(d, utterance_index=None)
