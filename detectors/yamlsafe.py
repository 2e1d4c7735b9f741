"""Safe YAML for every file livewatch reads: composed with limits, errors as ``file:line: reason``.

Configs and rule packs may come from people we do not trust (a site's rules folder, a config handed
over by email). Plain ``yaml.safe_load`` is safe from code execution but not from resource exhaustion:
a 500-byte "billion laughs" file (nested anchors and aliases) expands to 10⁹ nodes as soon as anything
walks it, and deep nesting overflows the parser's stack. Every YAML read therefore goes through
`compose` (or `load_file`), which refuses, before anything is expanded:

- a file larger than `YamlLimits.max_bytes` (checked on the size, before the file is read);
- nesting deeper than `max_depth`;
- more than `max_aliases` alias references (``*name``), and recursive aliases;
- a document whose tree, with every alias expanded, has more than `max_nodes` nodes, or in which
  aliases add more than `max_alias_nodes` nodes (what a naive walk would build).

The composer is PyYAML's (over LibYAML's event parser where PyYAML was built with it), with depth and
alias counters in `compose_node`; the expanded size is computed on the composed graph with shared
nodes counted once per reference (memoized, so a bomb costs time proportional to its text). Nodes keep
their start marks, so callers map validation errors back to lines.

This module sits in `detectors` because it is the leftmost stage that reads YAML; `app` and `review`
import it from here (imports point ingest → asr → detectors → alerts → store).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.events import AliasEvent, MappingStartEvent, SequenceStartEvent

__all__ = [
    "DEFAULT_LIMITS",
    "YamlLimits",
    "YamlLoadError",
    "compose",
    "load_file",
    "read_limited",
    "to_python",
]


@dataclass(frozen=True, slots=True)
class YamlLimits:
    """Bounds on one YAML document (defaults fit a 10k-rule pack with room to spare)."""

    max_bytes: int = 16 * 1024 * 1024
    max_depth: int = 64
    max_aliases: int = 1000
    max_nodes: int = 2_000_000
    max_alias_nodes: int = 100_000


DEFAULT_LIMITS = YamlLimits()


class YamlLoadError(ValueError):
    """A YAML file refused (syntax or limits); str() is ``path:line: reason``."""

    def __init__(self, path: Path | str, line: int, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{self.path}:{line}: {reason}")


_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Refused(Exception):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


class _LimitedLoader(Composer, _BaseLoader):  # type: ignore[misc]
    """PyYAML's composer (Python) over the fastest available event parser, with counters."""

    def __init__(self, text: str, limits: YamlLimits) -> None:
        _BaseLoader.__init__(self, text)
        self.anchors: dict[str, yaml.Node] = {}
        self._limits = limits
        self._depth = 0
        self._aliases = 0
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        line = event.start_mark.line + 1 if event.start_mark is not None else 1
        if isinstance(event, AliasEvent):
            self._aliases += 1
            if self._aliases > self._limits.max_aliases:
                raise _Refused(line, f"too many YAML aliases (more than {self._limits.max_aliases})")
            return super().compose_node(parent, index)
        self._nodes += 1
        if isinstance(event, SequenceStartEvent | MappingStartEvent):
            self._depth += 1
            if self._depth > self._limits.max_depth:
                raise _Refused(line, f"YAML nested too deeply (more than {self._limits.max_depth} levels)")
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
        return super().compose_node(parent, index)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [x for pair in node.value for x in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node, composed: int, limits: YamlLimits) -> None:
    """Expanded size of the graph (aliases counted once per reference); refuses cycles and blow-ups."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            total = 1 + sum(size[id(c)] for c in _children(node))
            if total > limits.max_nodes:
                raise _Refused(
                    node.start_mark.line + 1,
                    f"YAML expands to more than {limits.max_nodes} nodes (alias bomb?)",
                )
            if total - composed > limits.max_alias_nodes:
                raise _Refused(
                    node.start_mark.line + 1,
                    f"YAML aliases expand to more than {limits.max_alias_nodes} extra nodes (alias bomb?)",
                )
            size[key] = total
            continue
        if key in size:
            continue
        if key in on_path:
            raise _Refused(node.start_mark.line + 1, "recursive YAML alias")
        on_path.add(key)
        stack.append((node, True))
        for c in _children(node):
            ck = id(c)
            if ck in on_path:
                raise _Refused(c.start_mark.line + 1, "recursive YAML alias")
            if ck not in size:
                stack.append((c, False))


def compose(
    text: str, path: Path | str = "<string>", limits: YamlLimits = DEFAULT_LIMITS
) -> yaml.Node | None:
    """The single document of `text` as nodes (None when empty), within `limits`.

    Raises `YamlLoadError` for invalid YAML (at the line of the problem) and for any limit exceeded.
    """
    if len(text) > limits.max_bytes:
        raise YamlLoadError(path, 1, f"file too large (more than {limits.max_bytes} bytes)")
    loader = _LimitedLoader(text, limits)
    try:
        root = loader.get_single_node()
        if root is not None:
            _check_expansion(root, loader._nodes, limits)
        return root  # type: ignore[no-any-return]
    except _Refused as e:
        raise YamlLoadError(path, e.line, e.reason) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise YamlLoadError(path, line, f"YAML error: {e.problem or e.context or 'invalid YAML'}") from None
    except yaml.YAMLError as e:
        raise YamlLoadError(path, 1, f"YAML error: {e}") from None
    except RecursionError:
        raise YamlLoadError(path, 1, "YAML nested too deeply") from None
    finally:
        loader.dispose()


class _Constructor(yaml.SafeLoader):
    """SafeLoader's constructors, refusing a scalar they cannot build (``2020-13-45``, ``!!int 0xzz``,
    an unknown tag ``!x``) at that scalar's line instead of raising a bare ValueError or
    ConstructorError from deep inside PyYAML (found by tests/faults/test_fuzz.py)."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)  # type: ignore[no-untyped-call]
        except _Refused:
            raise
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark or node.start_mark
            raise _Refused(mark.line + 1, f"YAML error: {e.problem or e.context or 'invalid YAML'}") from None
        except (ValueError, TypeError, OverflowError, yaml.YAMLError) as e:
            value = node.value if isinstance(node.value, str) else ""
            shown = value if len(value) <= 40 else value[:40] + "..."
            raise _Refused(
                node.start_mark.line + 1, f"YAML error: cannot read {shown!r} as {node.tag}: {e}"
            ) from None


def to_python(node: yaml.Node, path: Path | str = "<string>") -> Any:
    """Plain Python values of a node that `compose` accepted (safe types only).

    Raises `YamlLoadError` (``path:line: YAML error: ...``) for a scalar no safe constructor can build.
    """
    loader = _Constructor("")
    try:
        return loader.construct_document(node)  # type: ignore[no-untyped-call]
    except _Refused as e:
        raise YamlLoadError(path, e.line, e.reason) from None
    except yaml.MarkedYAMLError as e:
        # a mapping's own checks (an unhashable key) run outside construct_object
        mark = e.problem_mark or e.context_mark or node.start_mark
        reason = f"YAML error: {e.context or ''} {e.problem or ''}".rstrip() if e.problem else "YAML error"
        raise YamlLoadError(path, mark.line + 1, reason.replace("  ", " ")) from None
    except (ValueError, TypeError, OverflowError, yaml.YAMLError) as e:
        raise YamlLoadError(path, node.start_mark.line + 1, f"YAML error: {e}") from None
    finally:
        loader.dispose()  # type: ignore[no-untyped-call]


def read_limited(path: Path, limits: YamlLimits = DEFAULT_LIMITS) -> bytes:
    """The bytes of `path`, refusing (without reading it all) a file over `limits.max_bytes`.

    Raises `OSError` when it cannot be read, `YamlLoadError` when it is too large.
    """
    with open(path, "rb") as f:
        raw = f.read(limits.max_bytes + 1)
    if len(raw) > limits.max_bytes:
        raise YamlLoadError(path, 1, f"file too large (more than {limits.max_bytes} bytes)")
    return raw


def load_file(path: Path, limits: YamlLimits = DEFAULT_LIMITS) -> tuple[Any, yaml.Node | None]:
    """(Python value, root node) of a YAML file; None/None when it is empty.

    Raises `OSError` (unreadable) or `YamlLoadError` (not UTF-8, invalid, or over a limit).
    """
    raw = read_limited(path, limits)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise YamlLoadError(path, 1, f"not UTF-8: {e}") from None
    root = compose(text, path, limits)
    return (to_python(root, path) if root is not None else None), root
