"""Detector base class and registry.

Every detector is a class registered under a `type` key (``rules``, ``price``, ``ocr``, ``visual``)
with a pydantic config class and a `detect(context)` method. The registry fails loudly on duplicate
keys. Every detector also exposes `phrase_table()`: examples that must and must not produce a
detection, which a meta-test runs; a detector whose input is not text (frames) returns a table with
`exempt_reason` set instead.

Concurrency: registration happens at import time (module level, single thread). A detector
instance is owned by the analysis worker that created it; `detect` may be called from that worker's
thread only unless the detector's own docstring says otherwise.
"""

from __future__ import annotations

import builtins
import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from asr.types import Utterance
from detectors.types import Detection

__all__ = [
    "DetectionContext",
    "Detector",
    "DuplicateDetectorError",
    "PhraseTable",
    "discover",
    "get_detector",
    "register",
    "registered",
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


class DuplicateDetectorError(KeyError):
    pass


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


_REGISTRY: dict[str, type[Detector[Any]]] = {}


def register(type_: str) -> Callable[[type[Detector[Any]]], type[Detector[Any]]]:
    """Class decorator: register a detector under `type_`; a second class for one key raises."""

    def deco(cls: type[Detector[Any]]) -> type[Detector[Any]]:
        existing = _REGISTRY.get(type_)
        if existing is not None and existing is not cls:
            raise DuplicateDetectorError(
                f"detector type {type_!r} is already registered by {existing.__module__}.{existing.__qualname__}"
            )
        cls.type = type_
        _REGISTRY[type_] = cls
        return cls

    return deco


def registered() -> Mapping[str, type[Detector[Any]]]:
    """A read-only view of the registry."""
    return dict(_REGISTRY)


def get_detector(type_: str) -> type[Detector[Any]]:
    try:
        return _REGISTRY[type_]
    except KeyError:
        raise KeyError(f"no detector of type {type_!r}; known: {sorted(_REGISTRY)}") from None


def discover() -> Mapping[str, type[Detector[Any]]]:
    """Import every module of the `detectors` package so their detectors register; return the registry."""
    import detectors

    for info in pkgutil.iter_modules(detectors.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"detectors.{info.name}")
    return registered()
