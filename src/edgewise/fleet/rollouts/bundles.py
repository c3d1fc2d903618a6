"""Bundles the server knows: resolved in the registry, signature-verified, then deployable and served.

Only a bundle whose signature verifies against a trusted publisher key becomes a `Bundle` row; the
device archive endpoint serves only those, from the store's local tar (an OCI store fetches it
into its cache), and refuses to serve a file whose size no longer matches what was verified.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select

from edgewise.core.bundle import read_signature, verify_bundle
from edgewise.core.errors import InvalidBundle, RegistryError, SignatureError
from edgewise.core.hashing import sha256_file
from edgewise.core.signing import PublicKey
from edgewise.fleet.db import Database
from edgewise.fleet.db.models import Bundle, TrustedKey
from edgewise.fleet.errors import NotFound


class PublishedRef(Protocol):
    name: str
    version: str
    digest: str


class BundleStore(Protocol):
    """What the fleet needs of `edgewise.registry.open_store(url)`."""

    def resolve(self, ref: str) -> Any: ...

    def fetch(self, ref: str, dest_dir: Path) -> Any: ...

    def archive_path(self, ref: str) -> Path: ...

    def list(self) -> Any: ...


def trusted_keys(db: Database) -> list[PublicKey]:
    with db.session() as session:
        return [PublicKey.from_b64(row.public_key) for row in session.scalars(select(TrustedKey))]


def add_trusted_key(db: Database, key: PublicKey) -> str:
    with db.session() as session:
        if session.get(TrustedKey, key.key_id) is None:
            session.add(TrustedKey(key_id=key.key_id, public_key=key.b64, added_at=time.time()))
    return key.key_id


def archive_url(digest: str) -> str:
    from edgewise.core.wire import API_PREFIX

    return f"{API_PREFIX}/device/bundles/{digest}/archive"


class BundleCatalog:
    def __init__(self, db: Database, store_url: str, store: BundleStore | None = None,
                 cache_dir: Path | None = None) -> None:
        self.db = db
        self.store_url = store_url
        self.cache_dir = cache_dir
        self._store = store
        self._lock = threading.Lock()
        self._archives: dict[str, Path] = {}

    @property
    def store(self) -> BundleStore:
        with self._lock:
            if self._store is None:
                from edgewise.registry import open_store

                self._store = open_store(self.store_url, cache_dir=self.cache_dir)
            return self._store

    def register(self, ref: str) -> Bundle:
        """Resolve `ref` (name:version or digest) in the store, verify its signature, remember it."""
        published = self.store.resolve(ref)
        with self.db.session() as session:
            known = session.get(Bundle, published.digest)
            if known is not None:
                return known
        keys = trusted_keys(self.db)
        if not keys:
            raise SignatureError("the server trusts no publisher key, so no bundle can be deployed",
                                 "start the server with --trust PUBLISHER.pub")
        with tempfile.TemporaryDirectory(prefix="edgewise-verify-") as tmp:
            bundle_dir = Path(tmp) / "bundle"
            self.store.fetch(ref, bundle_dir)
            manifest = verify_bundle(bundle_dir, keys)
            signer, _signature = read_signature(bundle_dir)
        if manifest.digest != published.digest:
            raise InvalidBundle(f"store returned {manifest.digest} for {ref}, which resolved to {published.digest}")
        archive = Path(self.store.archive_path(ref))
        row = Bundle(
            digest=manifest.digest, name=manifest.name, version=manifest.version, ref=f"{manifest.ref}",
            size_bytes=archive.stat().st_size, archive_sha256=sha256_file(archive), signer_key_id=signer,
            manifest=manifest.model_dump(mode="json"), registered_at=time.time(),
        )
        with self.db.session() as session:
            if session.get(Bundle, row.digest) is None:
                session.add(row)
        return row

    def archive(self, digest: str) -> tuple[Path, Bundle]:
        with self.db.session() as session:
            row = session.get(Bundle, digest)
        if row is None:
            raise NotFound(f"bundle {digest} is not deployed on this server")
        path = self._archives.get(digest)
        if path is None or not path.is_file():
            # Remote (OCI) stores answer archive_path with a registry round trip: ask once per bundle.
            try:
                path = Path(self.store.archive_path(row.ref))
            except RegistryError as error:
                raise NotFound(f"bundle {row.ref} is gone from the store: {error.message}") from None
            self._archives[digest] = path
        if path.stat().st_size != row.size_bytes:
            raise InvalidBundle(f"archive of {row.ref} changed size since it was verified; refusing to serve it")
        return path, row
