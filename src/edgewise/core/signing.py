"""Ed25519 keys and detached signatures, used for bundles (publisher keys) and device requests.

A public key travels as the base64 of its 32 raw bytes; its key id is the first 16 hex digits of
the sha256 of those bytes. Private keys are PKCS#8 PEM files written with mode 0600.
"""

from __future__ import annotations

import base64
import functools
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgewise.core.errors import ConfigError, SignatureError
from edgewise.core.hashing import sha256_bytes


@dataclass(frozen=True)
class PublicKey:
    raw: bytes

    @classmethod
    def from_b64(cls, text: str) -> PublicKey:
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except ValueError:
            raise SignatureError("public key is not valid base64", "copy the whole .pub file content") from None
        if len(raw) != 32:
            raise SignatureError("public key is not a 32-byte ed25519 key", "use a key made by `edgewise keys new`")
        return cls(raw)

    @property
    def b64(self) -> str:
        return base64.b64encode(self.raw).decode()

    @property
    def key_id(self) -> str:
        return sha256_bytes(self.raw)[:16]

    @functools.cached_property
    def _key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.raw)  # parsed once: verifying is the hot path

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


class PrivateKey:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public(self) -> PublicKey:
        raw = self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return PublicKey(raw)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def to_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @classmethod
    def from_pem(cls, data: bytes) -> PrivateKey:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise ConfigError(
                "private key file is not an unencrypted PEM key", "create one with `edgewise keys new`"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError("private key is not ed25519", "create one with `edgewise keys new`")
        return cls(key)


def write_key_pair(key: PrivateKey, private_path: Path) -> Path:
    """Write `private_path` (mode 0600, never world-readable even briefly) and `<private_path>.pub`."""
    private_path.parent.mkdir(parents=True, exist_ok=True)
    if private_path.exists():
        raise ConfigError(f"{private_path} already exists", "choose another path or delete the old key first")
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.to_pem())
    public_path = private_path.with_name(private_path.name + ".pub")
    public_path.write_text(key.public.b64 + "\n")
    return public_path


def load_private_key(path: Path) -> PrivateKey:
    if not path.is_file():
        raise ConfigError(f"private key {path} not found", "create one with `edgewise keys new`")
    return PrivateKey.from_pem(path.read_bytes())


def load_public_key(path_or_b64: str | Path) -> PublicKey:
    """Accept a `.pub` file path or the base64 text itself."""
    candidate = Path(path_or_b64)
    if candidate.is_file():
        return PublicKey.from_b64(candidate.read_text())
    text = str(path_or_b64)
    if text.endswith(".pub") or "/" in text and not text.endswith("="):  # meant as a file, not as base64
        raise ConfigError(f"public key file {text} not found",
                          "pass the .pub file `edgewise keys new` wrote (or the key's base64 text)")
    return PublicKey.from_b64(text)
