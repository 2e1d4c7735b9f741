"""The site's Ed25519 signing key, and signatures over evidence package manifests.

A package's hashes alone prove only that its files agree with each other: someone who changes a clip
can re-hash the capture manifest and the package manifest to match. The signature binds the package
manifest (and through its hashes every member) to the site that exported it.

- The key is made on first use in the data directory (`site-signing-key.pem`, PKCS#8 PEM, mode 0600),
  created atomically (written under a temporary name, then hard-linked into place, so two processes
  starting at once end up with the same key). The public key is exported with
  `livewatch evidence pubkey`; keys are named by their fingerprint, `sha256:` + the SHA-256 of the
  32 raw public-key bytes in hex.
- The package manifest carries a `signature` object (algorithm, key fingerprint, public key, value).
  What is signed is the manifest without its `signature` member as canonical JSON: keys sorted,
  separators `,` and `:`, no ASCII escaping, UTF-8 (`canonical_json`).

All crypto is the `cryptography` package's; nothing here is hand-written. Pure functions plus one file
write; safe from any thread.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import stat
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "KEY_FILE",
    "SIGNATURE_ALGORITHM",
    "SignatureCheck",
    "SiteKey",
    "canonical_json",
    "check_signature",
    "fingerprint",
    "load_or_create_site_key",
    "load_public_key",
    "public_key_raw",
    "sign_manifest",
    "site_public_key",
]

logger = logging.getLogger(__name__)

KEY_FILE = "site-signing-key.pem"
SIGNATURE_ALGORITHM = "Ed25519"
SIGNED_CONTENT = "manifest.json without 'signature', as canonical JSON (sorted keys, ',' ':', UTF-8)"


def fingerprint(public_raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(public_raw).hexdigest()


def public_key_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True, slots=True)
class SiteKey:
    private: Ed25519PrivateKey
    path: Path | None = None

    @property
    def public_raw(self) -> bytes:
        return public_key_raw(self.private.public_key())

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_raw)

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)


def _read_private(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        logger.warning("%s: the site signing key is readable by others (mode %o); chmod 600 it", path, mode)
    return key


def load_or_create_site_key(data_dir: Path) -> SiteKey:
    """The site key in `data_dir`, made (mode 0600) if there is none yet."""
    path = Path(data_dir) / KEY_FILE
    if path.is_file():
        return SiteKey(_read_private(path), path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd, tmp_name = tempfile.mkstemp(prefix=f".{KEY_FILE}.", dir=path.parent)  # mkstemp: mode 0600
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # never replaces a key another process made meanwhile
        except FileExistsError:
            return SiteKey(_read_private(path), path)
    finally:
        tmp.unlink(missing_ok=True)
    site = SiteKey(key, path)
    logger.warning("made the site signing key %s (%s); keep it with the data", path, site.fingerprint)
    return site


def site_public_key(data_dir: Path) -> bytes | None:
    """The raw public key of the site key in `data_dir`, without making one."""
    path = Path(data_dir) / KEY_FILE
    if not path.is_file():
        return None
    return public_key_raw(_read_private(path).public_key())


def load_public_key(path: Path) -> bytes:
    """A public key file: PEM (`livewatch evidence pubkey`), or an OpenSSH `ssh-ed25519` line."""
    data = Path(path).read_bytes()
    key: Any
    if data.lstrip().startswith(b"ssh-ed25519"):
        key = serialization.load_ssh_public_key(data.strip())
    else:
        key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return public_key_raw(key)


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _unsigned(manifest: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in manifest.items() if k != "signature"}


def sign_manifest(manifest: Mapping[str, Any], key: SiteKey) -> dict[str, Any]:
    """The manifest with its `signature` object added."""
    body = _unsigned(manifest)
    return {
        **body,
        "signature": {
            "algorithm": SIGNATURE_ALGORITHM,
            "key_fingerprint": key.fingerprint,
            "public_key": base64.b64encode(key.public_raw).decode("ascii"),
            "signed_content": SIGNED_CONTENT,
            "value": base64.b64encode(key.sign(canonical_json(body))).decode("ascii"),
        },
    }


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """`status`: valid (the manifest is exactly what the named key signed), invalid (changed after signing,
    or a malformed signature), unsigned. `trusted`: the signer is one of the keys the verifier trusts
    (None when the verifier gave none)."""

    status: str
    key_fingerprint: str | None = None
    trusted: bool | None = None
    detail: str = ""


def check_signature(manifest: Mapping[str, Any], trusted: Iterable[bytes] | None = None) -> SignatureCheck:
    sig = manifest.get("signature")
    if sig is None:
        return SignatureCheck("unsigned", detail="the package carries no signature")
    try:
        if sig.get("algorithm") != SIGNATURE_ALGORITHM:
            return SignatureCheck("invalid", detail=f"unknown signature algorithm {sig.get('algorithm')!r}")
        raw = base64.b64decode(sig["public_key"], validate=True)
        value = base64.b64decode(sig["value"], validate=True)
        public = Ed25519PublicKey.from_public_bytes(raw)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        return SignatureCheck("invalid", detail=f"malformed signature ({e})")
    fp = fingerprint(raw)
    trusted_set = None if trusted is None else set(trusted)
    is_trusted = None if trusted_set is None else raw in trusted_set
    if sig.get("key_fingerprint") != fp:
        return SignatureCheck(
            "invalid", fp, is_trusted, f"key_fingerprint {sig.get('key_fingerprint')} is not its key's"
        )
    try:
        public.verify(value, canonical_json(_unsigned(manifest)))
    except InvalidSignature:
        return SignatureCheck("invalid", fp, is_trusted, "the manifest was changed after it was signed")
    return SignatureCheck("valid", fp, is_trusted)
