"""Alert grouping for live streams: `group_detections`, one detection at a time.

A live alert must be raised the moment its first detection is found, yet later hits of the same
category and source within `merge_gap_s` belong to the same alert, exactly as in a scan
(`alerts.grouping.group_detections`). `LiveGrouper` keeps one open group per (broadcast, category,
source): a detection that starts within `merge_gap_s` of the open group's end joins it (the stored
alert is updated), any other starts a new group (a new alert). A group is *closed* once the transcript
is complete past its end plus the merge gap: nothing can join it any more, so its evidence can be cut.

Alert ids are `alert_id_for(broadcast, category, source, start of the group)`, as in a scan, fixed
when the group opens, so reprocessing after a restart finds the stored alert instead of a new one.

Pure state, no I/O; owned by the one analysis worker (not thread-safe).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from alerts.grouping import alert_id_for
from detectors.types import Detection

__all__ = ["GroupChange", "LiveGrouper"]


@dataclass(frozen=True, slots=True)
class GroupChange:
    alert_id: str
    broadcast_id: str
    detections: tuple[Detection, ...]  # the whole group so far
    new: bool  # True when this change opened the group (a new alert)


@dataclass(slots=True)
class _Group:
    alert_id: str
    broadcast_id: str
    detections: list[Detection] = field(default_factory=list)
    end_s: float = float("-inf")


class LiveGrouper:
    def __init__(self, merge_gap_s: float) -> None:
        self.merge_gap_s = merge_gap_s
        self._open: dict[tuple[str, str, str], _Group] = {}
        self._superseded: list[_Group] = []  # closed by a later group of the same key, not yet reported

    def add(self, broadcast_id: str, detections: Iterable[Detection]) -> list[GroupChange]:
        """Place new detections (in time order) into groups; one change per group touched."""
        touched: dict[str, tuple[_Group, bool]] = {}
        for d in sorted(detections, key=lambda d: (d.start_s, d.end_s)):
            key = (broadcast_id, d.category, d.source)
            g = self._open.get(key)
            if g is not None and d.start_s <= g.end_s + self.merge_gap_s:
                g.detections.append(d)
                g.end_s = max(g.end_s, d.end_s)
                new = touched.get(g.alert_id, (g, False))[1]
            else:
                if g is not None:  # detections come in time order: nothing can join the old group now
                    self._superseded.append(g)
                g = _Group(
                    alert_id_for(broadcast_id, d.category, d.source, d.start_s), broadcast_id, [d], d.end_s
                )
                self._open[key] = g
                new = True
            touched[g.alert_id] = (g, new)
        return [
            GroupChange(g.alert_id, g.broadcast_id, tuple(g.detections), new) for g, new in touched.values()
        ]

    def restore(self, alert_id: str, broadcast_id: str, detections: Iterable[Detection]) -> None:
        """Reopen a stored alert's group after a restart (its detections as stored)."""
        ds = sorted(detections, key=lambda d: (d.start_s, d.end_s))
        if not ds:
            return
        key = (broadcast_id, ds[0].category, ds[0].source)
        current = self._open.get(key)
        restored = _Group(alert_id, broadcast_id, list(ds), max(d.end_s for d in ds))
        if current is None or current.end_s <= restored.end_s:
            if current is not None:
                self._superseded.append(current)
            self._open[key] = restored
        else:
            self._superseded.append(restored)

    def open_alerts(self, broadcast_id: str) -> list[str]:
        return [g.alert_id for g in self._open.values() if g.broadcast_id == broadcast_id]

    def close_before(self, broadcast_id: str, complete_s: float) -> list[str]:
        """Close groups nothing can join any more: the transcript is complete up to `complete_s`."""
        closed = [g.alert_id for g in self._superseded if g.broadcast_id == broadcast_id]
        self._superseded = [g for g in self._superseded if g.broadcast_id != broadcast_id]
        for key, g in list(self._open.items()):
            if g.broadcast_id == broadcast_id and g.end_s + self.merge_gap_s < complete_s:
                closed.append(g.alert_id)
                del self._open[key]
        return closed

    def close_broadcast(self, broadcast_id: str) -> list[str]:
        return self.close_before(broadcast_id, float("inf"))
