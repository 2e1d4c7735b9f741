"""The errors the CLI reports as one line with exit code 2 (bad input, not a bug)."""

from __future__ import annotations

import importlib

from app.config import ConfigError
from ingest.errors import MediaError


def _collect() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [ConfigError, MediaError]
    for module, name in (("asr.errors", "AsrError"), ("detectors.rules", "RulePackError"),
                         ("app.cli", "UsageError")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


KNOWN_ERRORS = _collect()
