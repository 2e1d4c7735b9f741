"""Alert types: what a reviewer sees, and the evidence that backs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from detectors.types import Detection


@dataclass(frozen=True, slots=True)
class EvidenceFile:
    name: str  # file name inside the evidence folder
    kind: str  # clip | snapshot | transcript | manifest | other
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Evidence:
    dir: str
    files: tuple[EvidenceFile, ...]
    manifest_sha256: str
    clip_reencoded: bool = False


@dataclass(frozen=True, slots=True)
class Alert:
    """Detections of one category overlapping in time, as one item for a reviewer.

    `alert_id` is deterministic (broadcast, category, source, first time, rule) so that re-running
    the same media cannot raise the same alert twice.
    """

    alert_id: str
    broadcast_id: str
    category: str
    code: str
    rule_id: str
    severity: str
    law: str
    source: str
    start_s: float
    end_s: float
    text: str
    context: str
    rules_version: str
    detections: tuple[Detection, ...]
    start_ts: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class MediaRef:
    """An original recording an alert's clip is cut from, placed on the broadcast's clock."""

    path: str
    sha256: str
    size: int
    start_s: float  # where this file starts on the broadcast's clock (0 for a scanned file)
    duration_s: float
    has_video: bool
