"""The embedded default store: a directory on local disk.

Layout (one folder per bundle name; every write is a temp file or folder renamed into place):

    ROOT/NAME/versions/VERSION/bundle.tar    the deterministic tar (served with Range requests)
    ROOT/NAME/versions/VERSION/bundle.json   a copy of the manifest, for listing without unpacking
    ROOT/NAME/versions/VERSION/bundle.sig    a copy of the signature, when the bundle was signed
    ROOT/NAME/aliases.json                   {"production": "1.2.0", ...}
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from edgewise.core.archive import pack_bundle
from edgewise.core.bundle import check_unsigned_bundle, read_manifest
from edgewise.core.errors import RegistryError
from edgewise.core.manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest
from edgewise.core.strict_json import StrictJSONError
from edgewise.core.strict_json import loads as strict_loads
from edgewise.registry.store import (
    NAME_PATTERN,
    VERSION_PATTERN,
    Published,
    Store,
    check_alias,
    check_name,
    check_same_content,
    check_version,
    parse_ref,
    version_sort_key,
)

ARCHIVE_NAME = "bundle.tar"


class LocalStore(Store):
    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = f"file://{self.root}"
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    # --- paths ----------------------------------------------------------------------------------

    def _versions_dir(self, name: str) -> Path:
        return self.root / check_name(name) / "versions"

    def _version_dir(self, name: str, version: str) -> Path:
        return self._versions_dir(name) / check_version(version)

    def _published(self, name: str, version: str) -> Published | None:
        manifest_path = self._version_dir(name, version) / MANIFEST_NAME
        if not manifest_path.is_file():
            return None
        return Published(name, version, read_manifest(manifest_path.parent).digest)

    # --- Store ----------------------------------------------------------------------------------

    def publish(self, bundle_dir: Path) -> Published:
        manifest = check_unsigned_bundle(bundle_dir)
        existing = self._published(manifest.name, manifest.version)
        if existing is not None:
            check_same_content(existing, manifest)
            self._add_missing_signature(Path(bundle_dir), existing)
            return existing
        versions_dir = self._versions_dir(manifest.name)
        versions_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{manifest.version}.", suffix=".part", dir=versions_dir))
        try:
            pack_bundle(Path(bundle_dir), staging / ARCHIVE_NAME)
            shutil.copyfile(Path(bundle_dir) / MANIFEST_NAME, staging / MANIFEST_NAME)
            if (Path(bundle_dir) / SIGNATURE_NAME).is_file():
                shutil.copyfile(Path(bundle_dir) / SIGNATURE_NAME, staging / SIGNATURE_NAME)
            staging.chmod(0o755)
            try:
                os.rename(staging, self._version_dir(manifest.name, manifest.version))
            except OSError:
                # Someone published the same version meanwhile: same content is fine, other is not.
                raced = self._published(manifest.name, manifest.version)
                if raced is None:
                    raise
                check_same_content(raced, manifest)
                return raced
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return Published(manifest.name, manifest.version, manifest.digest)

    def _add_missing_signature(self, bundle_dir: Path, existing: Published) -> None:
        """Signing is not part of a bundle's identity: a signature may be added to an unsigned version."""
        version_dir = self._version_dir(existing.name, existing.version)
        new_signature = bundle_dir / SIGNATURE_NAME
        if (version_dir / SIGNATURE_NAME).is_file() or not new_signature.is_file():
            return
        temp_tar = version_dir / f".{ARCHIVE_NAME}.resign"
        pack_bundle(bundle_dir, temp_tar)
        shutil.copyfile(new_signature, version_dir / f".{SIGNATURE_NAME}.part")
        os.replace(temp_tar, version_dir / ARCHIVE_NAME)
        os.replace(version_dir / f".{SIGNATURE_NAME}.part", version_dir / SIGNATURE_NAME)

    def resolve(self, ref: str) -> Published:
        parsed = parse_ref(ref)
        if parsed.digest is not None:
            for published in self.list(parsed.name):
                if published.digest == parsed.digest:
                    return published
            raise RegistryError(f"no version of {parsed.name} has digest {parsed.digest} in {self.url}")
        tag = parsed.tag or ""
        by_version = self._published(parsed.name, tag) if VERSION_PATTERN.match(tag) else None
        if by_version is not None:
            return by_version
        version = self.aliases(parsed.name).get(tag)
        if version is not None:
            found = self._published(parsed.name, version)
            if found is not None:
                return found
        known = ", ".join(p.version for p in self.list(parsed.name)) or "none"
        raise RegistryError(f"{ref} is not in {self.url} (versions of {parsed.name}: {known})")

    def archive_path(self, ref: str) -> Path:
        published = self.resolve(ref)
        return self._version_dir(published.name, published.version) / ARCHIVE_NAME

    def manifest(self, ref: str) -> Manifest:
        published = self.resolve(ref)
        return read_manifest(self._version_dir(published.name, published.version))

    def list(self, name: str | None = None) -> list[Published]:
        if name is not None:
            names = [name]
        else:
            names = sorted(p.name for p in self.root.iterdir() if p.is_dir() and NAME_PATTERN.match(p.name))
        found: list[Published] = []
        for bundle_name in names:
            versions_dir = self._versions_dir(bundle_name)
            if not versions_dir.is_dir():
                continue
            versions = [p.name for p in versions_dir.iterdir() if not p.name.startswith(".")]
            for version in sorted(versions, key=version_sort_key):
                published = self._published(bundle_name, version)
                if published is not None:
                    found.append(published)
        return found

    def set_alias(self, name: str, alias: str, version: str) -> None:
        check_alias(alias)
        if self._published(name, version) is None:
            raise RegistryError(f"cannot point {name}:{alias} at {name}:{version}: that version is not published")
        if VERSION_PATTERN.match(alias) and self._published(name, alias) is not None:
            raise RegistryError(f"{alias!r} is a version of {name}; an alias cannot share its name")
        aliases = self.aliases(name)
        aliases[alias] = version
        path = self.root / name / "aliases.json"
        temp = path.with_name(f".aliases.{os.getpid()}.part")
        temp.write_text(json.dumps(aliases, sort_keys=True, indent=2) + "\n")
        os.replace(temp, path)

    def aliases(self, name: str) -> dict[str, str]:
        path = self.root / check_name(name) / "aliases.json"
        if not path.is_file():
            return {}
        try:
            data = strict_loads(path.read_bytes())
            if not isinstance(data, dict):
                raise StrictJSONError("the aliases file must hold one object")
        except StrictJSONError as error:
            raise RegistryError(
                f"{path} is corrupt: {error.message}", "fix or delete the file and set the aliases again"
            ) from None
        return {str(k): str(v) for k, v in data.items()}

