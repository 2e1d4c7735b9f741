"""Grouping detections into alerts: pure functions, no I/O.

Detections of the same category and source whose times overlap (or lie within `merge_gap_s`), or that
come from the same utterance, become one alert, so one phrase hit by several rules, or a caption read on many frames, pages a reviewer once.
Different categories on one phrase stay separate alerts: each is a separate violation to decide.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from alerts.types import Alert
from asr.types import Utterance
from detectors.types import SEVERITIES, Detection

__all__ = [
    "alert_id_for",
    "context_text",
    "group_alert_id",
    "group_detections",
    "joins",
    "make_alert",
    "severity_rank",
]


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


def joins(group_end_s: float, group_utterances: set[int], d: Detection, merge_gap_s: float) -> bool:
    """The one grouping rule: a detection (taken in time order) joins the open group of its category and
    source when it starts within `merge_gap_s` of the group's end, or comes from an utterance the group
    already holds (one line hit by several rules is one alert however far apart its phrases are)."""
    if d.start_s <= group_end_s + merge_gap_s:
        return True
    return d.utterance_index is not None and d.utterance_index in group_utterances


def group_detections(detections: Iterable[Detection], merge_gap_s: float) -> list[list[Detection]]:
    """Split detections into groups, each the hits of one category and source that touch in time.

    The batch form of `alerts.analyzer.BroadcastAnalyzer` (which applies the same rule, `joins`, one
    detection at a time)."""
    by_key: dict[tuple[str, str], list[Detection]] = {}
    for d in detections:
        by_key.setdefault((d.category, d.source), []).append(d)
    groups: list[list[Detection]] = []
    for key in sorted(by_key):
        items = sorted(by_key[key], key=lambda d: (d.start_s, d.end_s))
        current: list[Detection] = []
        current_end = float("-inf")
        current_utts: set[int] = set()
        for d in items:
            if current and not joins(current_end, current_utts, d, merge_gap_s):
                groups.append(current)
                current = []
                current_end = float("-inf")
                current_utts = set()
            current.append(d)
            if d.utterance_index is not None:
                current_utts.add(d.utterance_index)
            current_end = max(current_end, d.end_s)
        if current:
            groups.append(current)
    groups.sort(key=lambda g: (g[0].start_s, g[0].category))
    return groups


def alert_id_for(
    broadcast_id: str, category: str, source: str, start_s: float, utterance_index: int | None = None
) -> str:
    """Deterministic id: the same broadcast, category, source and moment give the same alert.

    The moment is the utterance the alert starts in when known, so that a changed rule set which
    raises the same alert from a different phrase of that utterance keeps its id (and its decisions).
    """
    anchor = f"u{utterance_index}" if utterance_index is not None else f"{round(start_s, 1):.1f}"
    key = f"{broadcast_id}|{category}|{source}|{anchor}"
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def group_alert_id(group: Sequence[Detection], broadcast_id: str) -> str:
    """The one alert-id rule: anchored to the group's first detection (in time order), by its utterance
    when it has one, else by its start time. Scan, replay and live all name alerts this way; the live
    analyzer fixes the id when the group opens, which is the same detection when input comes in order."""
    first = min(group, key=lambda d: (d.start_s, d.end_s))
    return alert_id_for(broadcast_id, first.category, first.source, first.start_s, first.utterance_index)


def context_text(
    utterances: Sequence[Utterance], start_s: float, end_s: float, before_s: float, after_s: float
) -> str:
    lo, hi = start_s - before_s, end_s + after_s
    return " ".join(u.text for u in utterances if u.end_s >= lo and u.start_s <= hi)


def make_alert(
    group: Sequence[Detection],
    *,
    broadcast_id: str,
    rules_version: str,
    context: str,
    started_ts: float | None = None,
    alert_id: str | None = None,
) -> Alert:
    """The group's lead detection (highest severity, then score, then earliest, then rule id) names rule
    and code; the order of the detections does not matter. `alert_id`: the id the group was given when
    it opened (live); by default `group_alert_id`."""
    lead = min(group, key=lambda d: (-severity_rank(d.severity), -d.score, d.start_s, d.rule_id))
    start_s = min(d.start_s for d in group)
    end_s = max(d.end_s for d in group)
    texts: list[str] = []
    for d in sorted(group, key=lambda d: d.start_s):
        if d.text not in texts:
            texts.append(d.text)
    return Alert(
        alert_id=alert_id or group_alert_id(group, broadcast_id),
        broadcast_id=broadcast_id,
        category=lead.category,
        code=lead.code,
        rule_id=lead.rule_id,
        severity=lead.severity,
        law=lead.law,
        source=lead.source,
        start_s=start_s,
        end_s=end_s,
        text=" ".join(texts),
        context=context,
        rules_version=rules_version,
        detections=tuple(group),
        start_ts=None if started_ts is None else started_ts + start_s,
    )
