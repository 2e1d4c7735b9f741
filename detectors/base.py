"""Detector base class.

Every detector is a class with a `type` name (``rules``, ``price``, ``ocr``, ``visual``,
``semantic``), a pydantic config class and a `detect(context)` method. Every detector also exposes
`phrase_table()`: examples that must and must not produce a detection, which a meta-test runs over
every detector class (tests/test_detectors_meta.py); a detector whose input is not text (frames) returns a
table with `exempt_reason` set instead.

There is no registry: the pipeline builds its detectors from their configs where it wires them
(app/analysis.py, app/monitor.py), and a name-to-class table that only tests used was one more place
for the two to drift apart.

Concurrency: a detector instance is owned by the analysis worker that created it; `detect` may be
called from that worker's thread only unless the detector's own docstring says otherwise.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from asr.types import Utterance
from detectors.types import Detection

__all__ = [
    "DetectionContext",
    "Detector",
    "PhraseTable",
]

C = TypeVar("C", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class DetectionContext:
    """What one `detect` call looks at: an utterance (speech or caption), or a frame."""

    utterance: Utterance | None = None
    stream_id: str = ""
    frame: Any = None  # an image (numpy array) for visual detectors
    frame_s: float | None = None  # the frame's time, seconds from broadcast start
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class PhraseTable:
    """Examples a detector must flag and must not flag; or why it has none (non-text detectors)."""

    should_flag: tuple[str, ...] = ()
    should_not_flag: tuple[str, ...] = ()
    exempt_reason: str | None = None

    @property
    def is_exempt(self) -> bool:
        return self.exempt_reason is not None


class Detector(ABC, Generic[C]):
    """Base class: subclasses set `config_model` and implement `detect` and `phrase_table`."""

    type: ClassVar[str] = ""
    config_model: ClassVar[builtins.type[BaseModel]]

    def __init__(self, config: C) -> None:
        self.config = config

    @abstractmethod
    def detect(self, context: DetectionContext) -> Iterable[Detection]:
        """Detections in one context; must not raise on ordinary input."""

    @classmethod
    @abstractmethod
    def phrase_table(cls) -> PhraseTable:
        """Examples for the meta-test (text detectors), or a table with `exempt_reason` set."""

