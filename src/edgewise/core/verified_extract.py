"""A downloaded bundle archive, checked before anything of it is written to disk.

`edgewise.core.archive.extract_bundle` writes every safe member and leaves verification to the
caller: a device would then have written up to 2 GiB, including files the manifest never listed,
before learning that the signature is bad. Here, in order:

1. the tar's member headers are checked (names, types, duplicates, sizes: `check_members`);
2. `bundle.json` and `bundle.sig` are read into memory (size-capped), parsed strictly, and the
   signature is checked against the trusted keys and the digest against the one asked for;
3. only then are files written, into a temporary sibling of the destination: exactly the files the
   manifest lists, each with its declared size (a variant's `size_bytes`) and hashed as it is
   written; a member the manifest does not list, or a listed file missing, refuses the archive
   before the first byte is written, and a hash or size mismatch removes everything written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

from edgewise.core.archive import DEFAULT_MAX_BYTES, check_members
from edgewise.core.bundle import (
    MAX_MANIFEST_BYTES,
    MAX_SIGNATURE_BYTES,
    check_signature,
    parse_manifest,
    parse_signature,
)
from edgewise.core.errors import ConfigError, InvalidBundle, SignatureError
from edgewise.core.manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest
from edgewise.core.signing import PublicKey

_CHUNK = 1 << 20


def _read_small(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int) -> bytes:
    if member.size > limit:
        raise InvalidBundle(f"archive member {member.name!r} is {member.size} bytes, over its {limit}-byte limit")
    source = tar.extractfile(member)
    if source is None:
        raise InvalidBundle(f"archive member {member.name!r} cannot be read")
    with source:
        data = source.read(limit + 1)
    if len(data) != member.size:
        raise InvalidBundle(f"archive member {member.name!r} is truncated")
    return data


def _declared_sizes(manifest: Manifest) -> dict[str, int]:
    return {variant.file: variant.size_bytes for variant in manifest.variants if variant.size_bytes > 0}


def _check_listing(manifest: Manifest, members: dict[str, tarfile.TarInfo]) -> None:
    present = set(members) - {MANIFEST_NAME, SIGNATURE_NAME}
    unlisted = sorted(present - set(manifest.files))
    if unlisted:
        raise InvalidBundle(f"archive member(s) {', '.join(unlisted[:5])} are not listed in {MANIFEST_NAME} "
                            "(added after signing?); nothing was extracted")
    missing = sorted(set(manifest.files) - present)
    if missing:
        raise InvalidBundle(f"file(s) {', '.join(missing[:5])} listed in {MANIFEST_NAME} are missing from the archive")
    for name, size in _declared_sizes(manifest).items():
        if members[name].size != size:
            raise InvalidBundle(f"archive member {name!r} is {members[name].size} bytes; the signed manifest "
                                f"declares {size}; nothing was extracted")


def _write_checked(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, sha256: str) -> None:
    source = tar.extractfile(member)
    if source is None:
        raise InvalidBundle(f"archive member {member.name!r} cannot be read")
    target.parent.mkdir(parents=True, exist_ok=True)
    digest, written = hashlib.sha256(), 0
    with source, open(target, "xb") as handle:
        while chunk := source.read(min(_CHUNK, member.size - written + 1)):
            written += len(chunk)
            if written > member.size:
                raise InvalidBundle(f"archive member {member.name!r} is larger than it declares")
            digest.update(chunk)
            handle.write(chunk)
    if written != member.size:
        raise InvalidBundle(f"archive member {member.name!r} is truncated")
    if digest.hexdigest() != sha256:
        raise InvalidBundle(f"file {member.name!r} does not match the sha256 in the signed manifest")
    target.chmod(0o644)


def extract_verified_bundle(tar_path: Path, dest_dir: Path, trusted_keys: Iterable[PublicKey],
                            expected_digest: str | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Manifest:
    """Verify the archive's signature (and digest, when given), then extract exactly what it signs."""
    dest_dir = Path(dest_dir)
    if dest_dir.exists() and (not dest_dir.is_dir() or any(dest_dir.iterdir())):
        raise ConfigError(f"{dest_dir} already exists and is not empty", "extract into a new directory")
    try:
        tar = tarfile.open(tar_path, mode="r:*")
        members = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError) as error:
        raise InvalidBundle(f"{tar_path} is not a readable bundle archive: {error}") from None
    with tar:
        by_name = dict(check_members(members, max_bytes))
        if MANIFEST_NAME not in by_name:
            raise InvalidBundle(f"archive {tar_path} has no {MANIFEST_NAME}")
        if SIGNATURE_NAME not in by_name:
            raise SignatureError(f"archive {tar_path} is not signed: {SIGNATURE_NAME} is missing")
        manifest = parse_manifest(_read_small(tar, by_name[MANIFEST_NAME], MAX_MANIFEST_BYTES), MANIFEST_NAME)
        key_id, signature = parse_signature(_read_small(tar, by_name[SIGNATURE_NAME], MAX_SIGNATURE_BYTES),
                                            SIGNATURE_NAME)
        check_signature(manifest, key_id, signature, trusted_keys)
        if expected_digest is not None and manifest.digest != expected_digest:
            raise InvalidBundle(f"bundle {manifest.ref} has digest {manifest.digest}, {expected_digest} was asked for",
                                "the server's bundle reference does not match its content")
        _check_listing(manifest, by_name)
        dest_dir.parent.mkdir(parents=True, exist_ok=True)
        temp_dir = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.", suffix=".part", dir=dest_dir.parent))
        try:
            for name in sorted(manifest.files):
                try:
                    _write_checked(tar, by_name[name], temp_dir / name, manifest.files[name])
                except (OSError, tarfile.TarError) as error:
                    raise InvalidBundle(f"cannot extract archive member {name!r}: {error}") from None
            for name in (MANIFEST_NAME, SIGNATURE_NAME):
                (temp_dir / name).write_bytes(_read_small(tar, by_name[name], MAX_MANIFEST_BYTES))
            temp_dir.chmod(0o755)
            if dest_dir.exists():
                dest_dir.rmdir()
            os.rename(temp_dir, dest_dir)
        except BaseException:
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise
    return manifest
