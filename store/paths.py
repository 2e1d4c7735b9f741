"""Paths the store keeps, relative to the data directory so that the data can move.

Evidence folders are stored as `evidence/<alert_id>`: relative to the data directory, whatever folder
the writing process ran in. Readers resolve them against the data directory they were configured with
(`--data-dir`, `$LIVEWATCH_DATA_DIR`, the config), so a data directory copied, moved or mounted elsewhere
keeps working, and so does a review app or CLI started from any folder. A path outside the data
directory (an evidence root configured elsewhere) is stored absolute, resolved once when written.

A `Database` opened for a data directory puts it in every session's `info["data_dir"]`
(`session_data_dir`); without one (a bare `Database(url)`), paths are stored as given.
Pure functions; no I/O except `Path.absolute()`/`resolve()`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

__all__ = [
    "resolve_payload",
    "resolve_payload_text",
    "resolve_stored",
    "session_data_dir",
    "stored_payload",
    "to_stored",
]


def session_data_dir(session: Session) -> Path | None:
    value = session.info.get("data_dir")
    return Path(value) if value is not None else None


def _under(path: Path, root: Path) -> Path | None:
    try:
        return path.relative_to(root)
    except ValueError:
        return None


def to_stored(path: str | Path, data_dir: Path | None) -> str:
    """The form a path is stored in: POSIX-relative to `data_dir` when it lies inside it, else absolute.

    A relative `path` means relative to this process's working folder (what a writer holds).
    """
    p = Path(path)
    if data_dir is None:
        return str(path)
    absolute = p.absolute()
    root = Path(data_dir).absolute()
    rel = _under(absolute, root)
    if rel is None:  # symlinks (a mounted or linked data directory): compare the real locations too
        rel = _under(absolute.resolve(), root.resolve())
    if rel is None:
        return str(absolute.resolve())
    return rel.as_posix() if rel.parts else "."


def resolve_stored(stored: str | Path, data_dir: Path | None) -> Path:
    """Where a stored path is now: relative ones lie in `data_dir` (as configured for this process)."""
    p = Path(stored)
    if p.is_absolute() or data_dir is None:
        return p
    return Path(data_dir) / p


def _resolve_stored_str(stored: str, data_dir: Path | None, root: str | None) -> str:
    """`str(resolve_stored(stored, data_dir))`, without pathlib for the usual stored form (a plain
    relative POSIX path; `root` is `str(data_dir)`): a bulk read resolves one per alert."""
    if (
        root is not None
        and stored
        and stored[0] != "/"
        and stored[-1] != "/"
        and "//" not in stored
        and "\\" not in stored
        and not stored.startswith("./")
        and "/./" not in stored
        and not stored.endswith("/.")
        and stored != "."
        and root not in ("/", ".")
    ):
        return f"{root}/{stored}"
    return str(resolve_stored(stored, data_dir))


def resolve_payload(
    payload: dict[str, Any], evidence_dir: str | None, data_dir: Path | None
) -> dict[str, Any]:
    """An alert payload as handed out: its evidence folder and manifest (and the evidence folders of the
    price claims it cites) resolved against the data directory. Returns a new dict."""
    out = dict(payload)
    root = str(data_dir) if data_dir is not None else None
    ev = out.get("evidence")
    if isinstance(ev, dict) and evidence_dir:
        folder = _resolve_stored_str(evidence_dir, data_dir, root)
        out["evidence"] = {**ev, "dir": folder, "manifest": _resolve_stored_str(f"{evidence_dir}/manifest.json",
                                                                                  data_dir, root)}
    details = out.get("details")
    if isinstance(details, dict) and isinstance(details.get("contradicts"), list):
        out["details"] = {
            **details,
            "contradicts": [
                {**c, "evidence_dir": _resolve_stored_str(c["evidence_dir"], data_dir, root)}
                if isinstance(c, dict) and c.get("evidence_dir")
                else c
                for c in details["contradicts"]
            ],
        }
    return out


def _dumps_ascii(value: str) -> str:
    """`json.dumps(value)` for a string (a path: usually printable ASCII, quoted as it is)."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return json.dumps(value)


# \\u escapes that must stay escapes in JSON text (control characters, quote, backslash) or that
# raw_unicode_escape would not join (surrogate pairs): such payloads are decoded instead
# (and price claims' evidence folders, which resolve_payload resolves too)
_UNSAFE_ESCAPE = re.compile(r'\\u(?:00[01][0-9a-fA-F]|0022|005[cC]|[dD][89a-fA-F])|"contradicts"')


def resolve_payload_text(raw: str, evidence_dir: str | None, data_dir: Path | None) -> str:
    """`json.dumps(resolve_payload(json.loads(raw), ...), ensure_ascii=False)`, without decoding and
    re-encoding the payload where that is not needed: `raw` as stored (json.dumps' default form, ASCII
    with \\uXXXX escapes), the stored evidence folder and manifest replaced by their resolved paths in
    the text, then the \\u escapes of non-ASCII characters turned back into characters (C codec;
    only an odd run of backslashes starts an escape, as in JSON). Anything else — a payload citing
    price claims' evidence, escaped control characters or surrogate pairs, non-ASCII or unexpected
    text — takes the decoding path, so the line is the same either way."""
    if not raw.isascii() or _UNSAFE_ESCAPE.search(raw):
        return _decoded_line(raw, evidence_dir, data_dir)
    start = raw.find('"evidence": {') if evidence_dir else -1
    if evidence_dir and start >= 0:
        if evidence_dir.endswith("/") or raw.find('"evidence": {', start + 1) >= 0:
            return _decoded_line(raw, evidence_dir, data_dir)
        root = str(data_dir) if data_dir is not None else None
        for key, stored in (("dir", evidence_dir), ("manifest", f"{evidence_dir}/manifest.json")):
            old = f'"{key}": {_dumps_ascii(stored)}'
            i = raw.find(old)  # once, inside the evidence object (else decode)
            if i < start or raw.find(old, i + 1) >= 0:
                return _decoded_line(raw, evidence_dir, data_dir)
            new = _dumps_ascii(_resolve_stored_str(stored, data_dir, root))
            raw = f'{raw[:i]}"{key}": {new}{raw[i + len(old):]}'
    return raw.encode("ascii").decode("raw_unicode_escape")


def _decoded_line(raw: str, evidence_dir: str | None, data_dir: Path | None) -> str:
    return json.dumps(resolve_payload(json.loads(raw), evidence_dir, data_dir), ensure_ascii=False)


def stored_payload(payload: dict[str, Any], evidence_dir: str | None) -> dict[str, Any]:
    """An alert payload as stored: its evidence folder and manifest in stored form."""
    ev = payload.get("evidence")
    if not isinstance(ev, dict) or not evidence_dir:
        return payload
    manifest = f"{evidence_dir.rstrip('/')}/manifest.json"
    return {**payload, "evidence": {**ev, "dir": evidence_dir, "manifest": manifest}}
