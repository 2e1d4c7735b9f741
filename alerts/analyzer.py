"""One analyzer for scan, replay and live: utterances → detections → alerts, incrementally.

`BroadcastAnalyzer` takes a broadcast's transcript in pieces, in order (`feed`), each with the
watermark it completes (`done_s`: nothing fed later starts before it), runs the rule set over every
line, places each detection into the open group of its category and source by the one grouping rule
(`alerts.grouping.joins`) and names each group once, when it opens, by the one alert-id rule
(`alerts.grouping.group_alert_id`). A scan is the same machine fed everything at once and then closed,
so scan, replay and live give the same alerts with the same ids whatever the chunking.

Each `feed` returns the alerts it opened or grew (live stores them at once, so an alert is raised the
moment its first detection is found) and the alerts it *closed*: nothing can join them any more and
their context is complete (the watermark is past their end plus the merge gap and the context after),
so their evidence can be cut. `close()` closes the rest.

Lanes: the speech transcript and the video (captions, visual detections) arrive separately with their
own watermarks. A group belongs to the speech lane when its source is speech, else to the video lane,
and closes on its lane's watermark.

Pure state, no I/O. Not thread-safe: owned by one analysis worker (or one scan).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from alerts.config import AlertsConfig
from alerts.grouping import context_text, group_alert_id, joins, make_alert
from alerts.types import Alert
from asr.types import Utterance
from detectors.types import Detection, RuleSet

__all__ = ["AnalyzerStep", "BroadcastAnalyzer", "analyze_all", "lane_of"]

SPEECH = "speech"
VIDEO = "video"


def lane_of(source: str) -> str:
    return SPEECH if source == "speech" else VIDEO


@dataclass(frozen=True, slots=True)
class AnalyzerStep:
    detections: tuple[Detection, ...]  # every detection this feed found (rules, then the extra ones)
    alerts: tuple[Alert, ...]  # alerts opened or grown by this feed, as they stand now
    closed: tuple[Alert, ...]  # alerts nothing can join any more, in their final form


@dataclass(slots=True)
class _Group:
    alert_id: str
    key: tuple[str, str]  # (category, source)
    detections: list[Detection] = field(default_factory=list)
    end_s: float = float("-inf")
    utterances: set[int] = field(default_factory=set)
    rules_version: str = ""

    def add(self, d: Detection) -> None:
        self.detections.append(d)
        self.end_s = max(self.end_s, d.end_s)
        if d.utterance_index is not None:
            self.utterances.add(d.utterance_index)

    @property
    def start_s(self) -> float:
        return min(d.start_s for d in self.detections)


class BroadcastAnalyzer:
    """The analysis state of one broadcast. See the module docstring."""

    def __init__(self, broadcast_id: str, cfg: AlertsConfig, *, started_ts: float | None = None) -> None:
        self.broadcast_id = broadcast_id
        self.cfg = cfg
        self.started_ts = started_ts  # the live clock may be refined while running: set it before a feed
        self._open: dict[tuple[str, str], _Group] = {}  # the group a detection of that key may join
        self._groups: list[_Group] = []  # every group not closed yet (open or superseded)
        self._pool: dict[str, list[Utterance]] = {}  # per source, by start: the context of alerts
        self._done: dict[str, float] = {}  # per lane: the watermark
        self._final: set[str] = set()  # lanes that are complete

    # -- input ----------------------------------------------------------------------------------------

    def feed(
        self,
        utterances: Sequence[Utterance],
        done_s: float,
        *,
        rules: RuleSet | None,
        lane: str = SPEECH,
        extra: Sequence[Detection] = (),
        final: bool = False,
        judge: Sequence[Utterance] = (),
    ) -> AnalyzerStep:
        """Analyse the next piece of the broadcast.

        `utterances`: new lines (speech) or captions, in order; they are judged and kept as context.
        `extra`: detections found elsewhere (price checks, visual detections). `judge`: lines judged but
        not kept as context (captions still on screen). `done_s`: the lane's watermark after this piece;
        `final`: the lane is complete.
        """
        found: list[Detection] = []
        if rules is not None:
            for u in utterances:
                found.extend(rules.detect(u))
            for u in judge:  # not final yet, no index: anchored by time
                found.extend(replace(d, utterance_index=None) for d in rules.detect(u))
        found.extend(extra)
        for u in utterances:
            bisect.insort(self._pool.setdefault(u.source, []), u, key=lambda x: x.start_s)
        version = rules.version if rules is not None else ""
        touched: dict[str, _Group] = {}
        gap = self.cfg.merge_gap_s
        for d in sorted(found, key=lambda d: (d.start_s, d.end_s)):
            key = (d.category, d.source)
            g = self._open.get(key)
            if g is None or not joins(g.end_s, g.utterances, d, gap):
                g = _Group(group_alert_id([d], self.broadcast_id), key)
                self._open[key] = g  # a superseded group stays in _groups until its lane closes it
                self._groups.append(g)
            g.add(d)
            if version:
                g.rules_version = version
            touched[g.alert_id] = g
        self._done[lane] = max(self._done.get(lane, 0.0), done_s)
        if final:
            self._final.add(lane)
        closed = self._close_ready()
        closed_ids = {a.alert_id for a in closed}
        alerts = tuple(self._alert(g) for g in touched.values() if g.alert_id not in closed_ids)
        self._prune()
        return AnalyzerStep(tuple(found), alerts, tuple(closed))

    def restore(self, alert: Alert) -> None:
        """Reopen a stored alert's group after a restart (its detections as stored, its id kept)."""
        if not alert.detections:
            return
        key = (alert.category, alert.source)
        g = _Group(alert.alert_id, key, rules_version=alert.rules_version)
        for d in sorted(alert.detections, key=lambda d: (d.start_s, d.end_s)):
            g.add(d)
        self._groups.append(g)
        current = self._open.get(key)
        if current is None or current.end_s <= g.end_s:
            self._open[key] = g

    def close(self) -> list[Alert]:
        """The broadcast is over: every group not closed yet, in order of time."""
        self._final.update((SPEECH, VIDEO))
        return self._close_ready()

    # -- state ------------------------------------------------------------------------------------------

    @property
    def open_ids(self) -> list[str]:
        return [g.alert_id for g in self._groups]

    @property
    def idle(self) -> bool:
        """No group is open: the analyzer may be dropped once its lanes are complete."""
        return not self._groups

    def lane_final(self, lane: str) -> bool:
        return lane in self._final

    # -- internals ----------------------------------------------------------------------------------------

    def _horizon(self) -> float:
        return max(self.cfg.merge_gap_s, self.cfg.context_after_s)

    def _close_ready(self) -> list[Alert]:
        horizon = self._horizon()
        keep: list[_Group] = []
        out: list[_Group] = []
        for g in self._groups:
            lane = lane_of(g.key[1])
            if lane in self._final or g.end_s + horizon < self._done.get(lane, -math.inf):
                out.append(g)
            else:
                keep.append(g)
        self._groups = keep
        for g in out:
            if self._open.get(g.key) is g:
                del self._open[g.key]
        alerts = [self._alert(g) for g in out]
        alerts.sort(key=lambda a: (a.start_s, a.category, a.source))
        return alerts

    def _alert(self, g: _Group) -> Alert:
        start, end = g.start_s, g.end_s
        pool = self._pool.get(g.key[1]) or self._pool.get("speech") or []
        a = self.cfg
        ctx = context_text(pool, start, end, a.context_before_s, a.context_after_s)
        return make_alert(
            g.detections,
            broadcast_id=self.broadcast_id,
            rules_version=g.rules_version,
            context=ctx,
            started_ts=self.started_ts,
            alert_id=g.alert_id,
        )

    def _prune(self) -> None:
        """Forget lines no alert can take as context any more: before the oldest open group and before
        the slowest lane's watermark (later groups start after it), less the context before."""
        marks = [g.start_s for g in self._groups]
        marks += [v for lane, v in self._done.items() if lane not in self._final]
        if not marks:
            if SPEECH in self._final and VIDEO in self._final:
                self._pool.clear()
            return
        low = min(marks) - self.cfg.context_before_s - 1.0
        for pool in self._pool.values():
            cut = 0
            while cut < len(pool) and pool[cut].end_s < low and pool[cut].start_s < low:
                cut += 1
            if cut:
                del pool[:cut]


def analyze_all(
    utterances: Iterable[Utterance],
    *,
    rules: RuleSet | None,
    cfg: AlertsConfig,
    broadcast_id: str,
    started_ts: float | None,
    extra: Sequence[Detection] = (),
) -> tuple[tuple[Detection, ...], list[Alert]]:
    """The scan: feed everything at once, then close. (detections, alerts in order of time)."""
    an = BroadcastAnalyzer(broadcast_id, cfg, started_ts=started_ts)
    step = an.feed(list(utterances), math.inf, rules=rules, extra=extra)
    alerts = [*step.closed, *an.close()]
    alerts.sort(key=lambda a: (a.start_s, a.category, a.source))
    return step.detections, alerts
