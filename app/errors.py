"""The errors the CLI reports as one line with exit code 2 (bad input, not a bug)."""

from __future__ import annotations

from alerts.package import EvidenceIntegrityError
from app.config import ConfigError
from asr.errors import AsrError
from detectors.price_config import PriceConfigError
from detectors.rules import RulePackError
from ingest.errors import MediaError
from store.prices import ReferencePriceError

__all__ = ["KNOWN_ERRORS", "UsageError"]


class UsageError(Exception):
    """Bad input detected by the CLI itself (an option's value)."""


KNOWN_ERRORS: tuple[type[BaseException], ...] = (
    AsrError,
    ConfigError,
    EvidenceIntegrityError,
    MediaError,
    PriceConfigError,
    ReferencePriceError,
    RulePackError,
    UsageError,
)
