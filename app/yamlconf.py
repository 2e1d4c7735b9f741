"""YAML → pydantic with errors that name file, line and field.

The YAML is composed into nodes first so every mapping key and value keeps its line; a validation error's
location (`asr.beam_size`) is walked back through those nodes to the line a user must edit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from detectors.yamlsafe import YamlLoadError, compose, read_limited, to_python

__all__ = ["line_of", "load_yaml_model", "node_to_python"]

M = TypeVar("M", bound=BaseModel)


def node_to_python(node: yaml.Node, path: Path | str = "<string>") -> Any:
    """Plain values of a composed node; `YamlLoadError` (``path:line: ...``) for an unreadable scalar."""
    return to_python(node, path)


def line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest node along `loc` (keys and list indexes)."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    line = k.start_mark.line + 1
                    nxt = v
                    break
            if nxt is None:
                return line
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def load_yaml_model(path: Path, model: type[M], error: type[Exception]) -> M:
    """Parse and validate; raise `error('file:line: field: reason')` on the first problem."""
    try:
        text = read_limited(path).decode("utf-8")
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise error(f"{path}:1: not UTF-8: {e.reason} at byte {e.start}") from None
    except YamlLoadError as e:
        raise error(str(e)) from None
    try:
        root = compose(text, path)  # limits: aliases, depth, size (detectors/yamlsafe.py)
        data = node_to_python(root, path) if root is not None else {}
    except YamlLoadError as e:
        raise error(str(e)) from None
    if not isinstance(data, dict):
        raise error(f"{path}:1: expected a mapping at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = tuple(first["loc"])
        line = line_of(root, loc)
        field = ".".join(str(p) for p in loc) or "(top level)"
        raise error(f"{path}:{line}: {field}: {first['msg']}") from None
