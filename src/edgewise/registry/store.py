"""The `Store` interface every bundle back end implements, and the helpers they share.

A store holds published bundles by name and version. A published version is immutable: its
identity is the bundle digest (`Manifest.digest`, which pins every file's sha256). Publishing the
same content again is a no-op; different content under an existing version raises
ImmutableVersionError. Aliases (`staging`, `production`, any name) are movable pointers to versions.

References accepted by `resolve`, `fetch` and `archive_path`:

    name:version        e.g. `detector:1.2.0`
    name:alias          e.g. `detector:production` (a version of that name wins over an alias)
    name@sha256:HEX     the bundle digest
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edgewise.core.archive import extract_bundle
from edgewise.core.bundle import check_unsigned_bundle, verify_bundle
from edgewise.core.errors import ConfigError, ImmutableVersionError, InvalidBundle
from edgewise.core.manifest import Manifest
from edgewise.core.signing import PublicKey

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
ALIAS_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Published:
    """One published bundle version: its name, version and digest (its identity)."""

    name: str
    version: str
    digest: str

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class Reference:
    """A parsed reference: `name` plus exactly one of `tag` (version or alias) or `digest`."""

    name: str
    tag: str | None = None
    digest: str | None = None


def parse_ref(ref: str) -> Reference:
    """Parse `name:version`, `name:alias` or `name@sha256:...`; ConfigError explains a bad one."""
    fix = "write a reference as NAME:VERSION, NAME:ALIAS or NAME@sha256:DIGEST"
    if "@" in ref:
        name, digest = ref.split("@", 1)
        if not DIGEST_PATTERN.match(digest):
            raise ConfigError(f"bad digest in reference {ref!r}: expected sha256: and 64 hex digits", fix)
        parsed = Reference(name=name, digest=digest)
    elif ":" in ref:
        name, tag = ref.split(":", 1)
        if not tag:
            raise ConfigError(f"reference {ref!r} has an empty version", fix)
        parsed = Reference(name=name, tag=tag)
    else:
        raise ConfigError(f"reference {ref!r} names no version, alias or digest", fix)
    if not NAME_PATTERN.match(parsed.name):
        raise ConfigError(f"bad bundle name in reference {ref!r}", fix)
    return parsed


VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"bad bundle name {name!r}", "a name is lowercase letters, digits, '.', '_' or '-'")
    return name


def check_version(version: str) -> str:
    if not VERSION_PATTERN.match(version):
        raise ConfigError(f"bad version {version!r}", "a version is letters, digits, '.', '_', '+' or '-'")
    return version


def check_alias(alias: str) -> str:
    if not ALIAS_PATTERN.match(alias):
        raise ConfigError(
            f"bad alias {alias!r}",
            "an alias starts with a letter and has letters, digits, '-' or '_' (e.g. production)",
        )
    return alias


class Store(ABC):
    """Where bundles are published to and fetched from (a directory, an OCI registry...)."""

    url: str

    @abstractmethod
    def publish(self, bundle_dir: Path) -> Published:
        """Store the bundle at `bundle_dir` (its file hashes are checked first)."""

    @abstractmethod
    def resolve(self, ref: str) -> Published:
        """The published version `ref` names; RegistryError if there is none."""

    @abstractmethod
    def archive_path(self, ref: str) -> Path:
        """A packed tar of the bundle on local disk (fetched into a cache for remote stores)."""

    @abstractmethod
    def list(self, name: str | None = None) -> list[Published]:
        """Every published version (of `name`, or of every name), sorted by name then version."""

    @abstractmethod
    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point `name:alias` at `name:version` (moving it if it pointed elsewhere)."""

    @abstractmethod
    def aliases(self, name: str) -> dict[str, str]:
        """alias -> version for bundle `name`."""

    def manifest(self, ref: str) -> Manifest:
        """The manifest of a published version (default: read from its archive)."""
        published = self.resolve(ref)
        with tempfile.TemporaryDirectory(prefix="edgewise-manifest-") as temp:
            bundle_dir = self.fetch(published.ref, Path(temp) / "bundle")
            return check_unsigned_bundle(bundle_dir)

    def fetch(self, ref: str, dest_dir: Path, *, trusted_keys: Iterable[PublicKey] | None = None) -> Path:
        """Extract the bundle `ref` into `dest_dir`, atomically and only once its hashes check out
        (and, with `trusted_keys`, its signature)."""
        published = self.resolve(ref)
        return extract_verified(self.archive_path(published.ref), Path(dest_dir), published.digest, trusted_keys)


def extract_verified(tar_path: Path, dest_dir: Path, expected_digest: str,
                     trusted_keys: Iterable[PublicKey] | None = None) -> Path:
    """Extract into a hidden sibling, check every hash and the digest (and the signature against
    `trusted_keys` when given), then rename into `dest_dir`.

    A bundle that fails a check is deleted and never appears at `dest_dir`.
    """
    if dest_dir.exists() and (not dest_dir.is_dir() or any(dest_dir.iterdir())):
        raise ConfigError(f"{dest_dir} already exists and is not empty", "pull into a new directory")
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    staging_root = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.", suffix=".fetch", dir=dest_dir.parent))
    try:
        staged = extract_bundle(tar_path, staging_root / "bundle")
        if trusted_keys is not None:
            manifest = verify_bundle(staged, list(trusted_keys))
        else:
            manifest = check_unsigned_bundle(staged)
        if manifest.digest != expected_digest:
            raise InvalidBundle(
                f"bundle in {tar_path} has digest {manifest.digest}, but the store published {expected_digest}",
                "the store was tampered with; publish the bundle again under a new version",
            )
        if dest_dir.exists():
            dest_dir.rmdir()
        os.rename(staged, dest_dir)
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
    return dest_dir


def check_same_content(existing: Published, manifest: Manifest) -> None:
    """Return when `manifest` is what `existing` already holds; ImmutableVersionError when it is not."""
    if existing.digest != manifest.digest:
        raise ImmutableVersionError(
            f"{existing.ref} is already published with digest {existing.digest}; "
            f"this bundle has different content ({manifest.digest})"
        )


def version_sort_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort `1.10.0` after `1.9.0`: numeric parts as numbers, the rest as text."""
    parts = re.split(r"[._+-]", version)
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in parts)
