"""The errors the CLI reports as one line with exit code 2 (bad input, not a bug).

The error classes live in the stages that raise them, several of which import heavy libraries (the
ASR model, SQLAlchemy, OpenCV). So that `livewatch --help` and `livewatch rules check` start in a
fraction of a second, the CLI does not import them up front: `known_errors()` returns the classes of
the modules already imported. An instance can only exist once its class's module has been imported,
so catching `known_errors()` after the fact catches exactly what catching all of them would.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["UsageError", "known_errors"]


class UsageError(Exception):
    """Bad input detected by the CLI itself (an option's value)."""


# (module, class) of every error reported as one line with exit code 2
_KNOWN: tuple[tuple[str, str], ...] = (
    ("asr.errors", "AsrError"),
    ("app.config", "ConfigError"),
    ("alerts.package", "EvidenceIntegrityError"),
    ("ingest.errors", "MediaError"),
    ("detectors.price_config", "PriceConfigError"),
    ("store.prices", "ReferencePriceError"),
    ("detectors.rules", "RulePackError"),
    ("store.leases", "LeaseHeldError"),
)


def known_errors(*, loaded_only: bool = True) -> tuple[type[BaseException], ...]:
    """The known error classes; with ``loaded_only`` (the default) only those already imported."""
    found: list[type[BaseException]] = [UsageError]
    for module, name in _KNOWN:
        mod = sys.modules.get(module) if loaded_only else importlib.import_module(module)
        cls = getattr(mod, name, None) if mod is not None else None
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)
