"""Detectors: rules over speech and on-screen text, price-claim extraction, frame analysis.

Public entry points (imported lazily, so that `import detectors.types` stays light):

- `detectors.engine.RuleSet` — compiled rule packs (`RuleSet.load(dirs)`, `.detect(utterance)`,
  `.explain(text)`, `.version`); `detectors.engine.RuleHolder` — hot reload;
- `detectors.normalize.normalize` — text normalization with a map back to the original characters;
- `detectors.rules.RulePackError` — a pack that does not validate (``path:line: field: reason``);
- `detectors.base` — the `Detector` base class (config model, `detect`, `phrase_table`).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["RuleHolder", "RulePackError", "RuleSet"]

_LAZY = {
    "RuleSet": "detectors.engine",
    "RuleHolder": "detectors.engine",
    "RulePackError": "detectors.rules",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'detectors' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
