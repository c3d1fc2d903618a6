"""Storing and fetching bundles: a local directory (default) or any OCI registry.

    store = open_store("~/.edgewise/registry")          # or file:///path, or oci://host:5000/models
    store.publish(bundle_dir)                            # -> Published(name, version, digest)
    store.fetch("detector:production", dest_dir)         # atomic, hashes checked
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

from edgewise.core.errors import ConfigError
from edgewise.core.plugins import Registry
from edgewise.registry.store import Published, Reference, Store, parse_ref

__all__ = ["STORES", "Published", "Reference", "Store", "open_store", "parse_ref"]

StoreFactory = Callable[[str, "Path | None"], Store]
STORES: Registry[StoreFactory] = Registry("bundle store")


def _open_local(url: str, cache_dir: Path | None) -> Store:
    from edgewise.registry.local import LocalStore

    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"file URL {url!r} names a remote host", "write it as file:///absolute/path")
        return LocalStore(Path(unquote(parsed.path)))
    return LocalStore(Path(url))


def _open_oci(url: str, cache_dir: Path | None) -> Store:
    from edgewise.registry.oci import OciStore

    return OciStore(url, cache_dir=cache_dir)


STORES.add("file", _open_local, "a directory on local disk (the embedded default)")
STORES.add("oci", _open_oci, "any OCI registry, bundles pushed as OCI artifacts (oras)")


def open_store(url: str | Path, *, cache_dir: Path | None = None) -> Store:
    """A plain path or file:///path -> LocalStore; oci://HOST:PORT/NAMESPACE -> OciStore."""
    text = str(url)
    scheme = urlparse(text).scheme if "://" in text else "file"
    return STORES.get(scheme)(text, cache_dir)
