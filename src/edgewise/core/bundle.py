"""Bundles on disk: create, read, sign and verify a bundle directory.

A bundle directory holds the model file(s), `bundle.json` (the manifest, listing the sha256 of every
other file) and, once signed, `bundle.sig`: a detached ed25519 signature over the manifest's
canonical bytes. Because the manifest pins every file's hash, the signature pins the whole bundle.

`verify_bundle` is what a device runs before it ever loads a model: it names the exact reason a
bundle is refused (missing signature, untrusted key, bad signature, which file changed, appeared
or disappeared).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from pydantic import ValidationError

from edgewise.core.errors import InvalidBundle, SignatureError
from edgewise.core.hashing import canonical_json, sha256_file
from edgewise.core.manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest
from edgewise.core.signing import PrivateKey, PublicKey
from edgewise.core.strict_json import StrictJSONError
from edgewise.core.strict_json import loads as strict_loads
from edgewise.core.validation import describe_validation

SIGNATURE_ALGORITHM = "ed25519"
_RESERVED = {MANIFEST_NAME, SIGNATURE_NAME}


def check_relative_name(name: str) -> str:
    """A bundle file name must be a plain relative POSIX path that stays inside the bundle."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or "\\" in name or any(part in ("", ".", "..") for part in name.split("/")):
        raise InvalidBundle(
            f"bundle file name {name!r} is not a plain relative path",
            "name model files like 'model.onnx' or 'variants/int8.onnx' (no '..', no leading '/')",
        )
    if name in _RESERVED:
        raise InvalidBundle(f"bundle file name {name!r} is reserved", "rename the model file")
    return name


def create_bundle(out_dir: Path, manifest: Manifest, model_files: dict[str, Path]) -> Manifest:
    """Copy `model_files` (bundle-relative name -> source path) into `out_dir` and write bundle.json.

    Every variant's `file` must be among `model_files`; `manifest.files` and each variant's
    `size_bytes` are filled in. Refuses to write into a non-empty `out_dir`.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InvalidBundle(f"{out_dir} already exists and is not empty", "choose a new output directory")
    for name, source in model_files.items():
        check_relative_name(name)
        if not Path(source).is_file():
            raise InvalidBundle(f"model file {source} (for {name!r}) not found", "check the path of the model file")
    missing = [v.file for v in manifest.variants if v.file not in model_files]
    if missing:
        raise InvalidBundle(
            f"variant file(s) {missing} of {manifest.ref} are not among the model files {sorted(model_files)}",
            "pass a model file for every variant",
        )
    if not manifest.variants:
        raise InvalidBundle(f"bundle {manifest.ref} has no variants", "add at least one model variant")

    # Build in a hidden sibling and rename it into place: a crash never leaves a half bundle at out_dir.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".part", dir=out_dir.parent))
    try:
        for name, source in model_files.items():
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        filled = manifest.model_copy(deep=True)
        filled.files = {name: sha256_file(staging / name) for name in sorted(model_files)}
        for variant in filled.variants:
            variant.size_bytes = (staging / variant.file).stat().st_size
        write_manifest(staging, filled)
        staging.chmod(0o755)
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        os.rename(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return filled


def write_manifest(bundle_dir: Path, manifest: Manifest) -> Path:
    """Write bundle.json pretty-printed with sorted keys; reading it back gives the same canonical bytes."""
    path = Path(bundle_dir) / MANIFEST_NAME
    text = json.dumps(manifest.model_dump(mode="json"), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")  # labels may be any language, whatever the locale
    return path


MAX_MANIFEST_BYTES = 4 << 20  # labels, metrics and file lists: far below this
MAX_SIGNATURE_BYTES = 4096


def read_manifest(bundle_dir: Path) -> Manifest:
    path = Path(bundle_dir) / MANIFEST_NAME
    if not path.is_file():
        raise InvalidBundle(f"{bundle_dir} is not a bundle: {MANIFEST_NAME} is missing")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise InvalidBundle(f"{path} is {path.stat().st_size} bytes, over the {MAX_MANIFEST_BYTES}-byte limit")
    return parse_manifest(path.read_bytes(), str(path))


def parse_manifest(data: bytes, where: str) -> Manifest:
    """A manifest from its bytes, strictly: duplicate keys or deep nesting are InvalidBundle, as is
    any field the schema does not know. `where` names it in the error."""
    try:
        return _validated(strict_loads(data), where)
    except StrictJSONError as error:
        raise InvalidBundle(f"{where} is not valid JSON: {error.message}") from None


def _validated(data: object, path: str) -> Manifest:
    try:
        return Manifest.model_validate(data)
    except ValidationError as error:
        raise InvalidBundle(f"{path} is malformed at {describe_validation(error, first_only=True)}") from None


def sign_bundle(bundle_dir: Path, key: PrivateKey) -> None:
    """Write bundle.sig: an ed25519 signature over the canonical manifest."""
    manifest = read_manifest(bundle_dir)
    signature = {
        "algorithm": SIGNATURE_ALGORITHM,
        "key_id": key.public.key_id,
        "signature": base64.b64encode(key.sign(manifest.canonical_bytes())).decode(),
    }
    path = Path(bundle_dir) / SIGNATURE_NAME
    temp = path.with_name(f".{SIGNATURE_NAME}.part")
    temp.write_bytes(canonical_json(signature) + b"\n")
    os.replace(temp, path)  # a reader sees the old signature or the new one, never half of one


def read_signature(bundle_dir: Path) -> tuple[str, bytes]:
    """(key_id, signature bytes) from bundle.sig, or SignatureError naming what is wrong."""
    path = Path(bundle_dir) / SIGNATURE_NAME
    if not path.is_file():
        raise SignatureError(f"bundle {bundle_dir} is not signed: {SIGNATURE_NAME} is missing")
    if path.stat().st_size > MAX_SIGNATURE_BYTES:
        raise SignatureError(f"{path} is over {MAX_SIGNATURE_BYTES} bytes; a signature file is a few hundred")
    return parse_signature(path.read_bytes(), str(path))


def parse_signature(raw: bytes, where: str) -> tuple[str, bytes]:
    """(key_id, signature bytes) from a bundle.sig's bytes, strictly (duplicate keys refused)."""
    try:
        data = strict_loads(raw)
    except StrictJSONError as error:
        raise SignatureError(f"{where} is malformed: {error.message}") from None
    try:
        if set(data) != {"algorithm", "key_id", "signature"}:
            raise KeyError("fields")
        algorithm, key_id, signature_b64 = data["algorithm"], data["key_id"], data["signature"]
        signature = base64.b64decode(signature_b64, validate=True)
    except (KeyError, TypeError, binascii.Error, ValueError):
        raise SignatureError(f"{where} is malformed (expected algorithm, key_id and base64 signature)") from None
    path = where
    if algorithm != SIGNATURE_ALGORITHM:
        raise SignatureError(f"{path} uses algorithm {algorithm!r}; only {SIGNATURE_ALGORITHM} is accepted")
    return str(key_id), signature


def bundle_files(bundle_dir: Path) -> set[str]:
    """Every entry under `bundle_dir` except bundle.json/bundle.sig, as relative POSIX paths.

    Symlinks and other non-regular files are reported too (as their names), so verification
    treats them as unexpected rather than following them.
    """
    root = Path(bundle_dir)
    found: set[str] = set()
    for path in root.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            continue
        name = path.relative_to(root).as_posix()
        if name not in _RESERVED:
            found.add(name)
    return found


def check_files(bundle_dir: Path, manifest: Manifest) -> None:
    """Every listed file present with its sha256, no file unlisted; InvalidBundle names the first culprit."""
    root = Path(bundle_dir)
    present = bundle_files(root)
    listed = set(manifest.files)
    missing = sorted(listed - present)
    if missing:
        raise InvalidBundle(f"file(s) {', '.join(missing)} listed in {MANIFEST_NAME} are missing from the bundle")
    added = sorted(present - listed)
    if added:
        raise InvalidBundle(
            f"file(s) {', '.join(added)} are in the bundle but not listed in {MANIFEST_NAME} (added after signing?)"
        )
    for name in sorted(listed):
        path = root / name
        if path.is_symlink() or not path.is_file():
            raise InvalidBundle(f"bundle entry {name!r} is not a regular file")
        actual = sha256_file(path)
        if actual != manifest.files[name]:
            raise InvalidBundle(
                f"file {name!r} was modified: sha256 {actual[:16]}... does not match the manifest's "
                f"{manifest.files[name][:16]}..."
            )
    for variant in manifest.variants:
        if variant.file not in listed:
            raise InvalidBundle(
                f"variant {variant.name!r} points at {variant.file!r}, which the manifest does not list"
            )


def verify_bundle(bundle_dir: Path, trusted_keys: Iterable[PublicKey]) -> Manifest:
    """The manifest of a bundle that is signed by a trusted key and whose files are exactly as signed."""
    manifest = read_manifest(bundle_dir)
    key_id, signature = read_signature(bundle_dir)
    check_signature(manifest, key_id, signature, trusted_keys)
    check_files(bundle_dir, manifest)
    return manifest


def check_signature(manifest: Manifest, key_id: str, signature: bytes, trusted_keys: Iterable[PublicKey]) -> None:
    """SignatureError unless `signature` over the canonical manifest is by one of `trusted_keys`."""
    by_id = {key.key_id: key for key in trusted_keys}
    if not by_id:
        raise SignatureError("no trusted publisher keys were given", "pass the publisher's .pub key (--trust)")
    key = by_id.get(key_id)
    if key is None:
        raise SignatureError(
            f"bundle {manifest.ref} is signed by untrusted key {key_id} (trusted: {', '.join(sorted(by_id))})",
            "trust the publisher's public key, or re-sign the bundle with a trusted key",
        )
    if not key.verify(signature, manifest.canonical_bytes()):
        raise SignatureError(
            f"signature of bundle {manifest.ref} by key {key_id} does not match {MANIFEST_NAME} "
            "(the manifest was changed after signing)"
        )


def check_unsigned_bundle(bundle_dir: Path) -> Manifest:
    """The manifest, after checking file hashes only (stores use this; devices use verify_bundle)."""
    manifest = read_manifest(bundle_dir)
    check_files(bundle_dir, manifest)
    return manifest
