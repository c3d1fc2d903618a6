"""A store in any OCI registry (Docker Distribution, Harbor, GHCR, ECR, Zot...), through `oras`.

URL: `oci://HOST:PORT/NAMESPACE` (plain HTTP only for loopback hosts or with `?insecure=1`).
Bundle `NAME:VERSION` becomes repository `NAMESPACE/NAME`, tag VERSION (a '+' in the version,
which tags cannot hold, is written as '_'). Each tag is an OCI artifact of our own types:

    artifactType  application/vnd.edgewise.bundle.v1
    config        bundle.json, application/vnd.edgewise.bundle.manifest.v1+json
    layer         the deterministic bundle tar, application/vnd.edgewise.bundle.layer.v1.tar
    annotations   dev.edgewise.bundle.{name,version,digest}

Aliases are extra tags `_alias.ALIAS` (a version never starts with '_') pointing at the same OCI
manifest. Pulled archives are cached by layer digest under `cache_dir`, written atomically.
"""

from __future__ import annotations

import builtins
import hashlib
import ipaddress
import json
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from edgewise.core.archive import pack_bundle
from edgewise.core.bundle import check_unsigned_bundle, parse_manifest
from edgewise.core.errors import ConfigError, RegistryError, ServiceUnavailable
from edgewise.core.hashing import sha256_file
from edgewise.core.manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest
from edgewise.core.settings import default_home
from edgewise.registry.store import (
    ALIAS_PATTERN,
    VERSION_PATTERN,
    Published,
    Store,
    check_alias,
    check_name,
    check_same_content,
    parse_ref,
    version_sort_key,
)

ARTIFACT_TYPE = "application/vnd.edgewise.bundle.v1"
CONFIG_MEDIA_TYPE = "application/vnd.edgewise.bundle.manifest.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.edgewise.bundle.layer.v1.tar"
OCI_MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
ANNOTATION = "dev.edgewise.bundle"
ALIAS_TAG_PREFIX = "_alias."
SIGNED_ANNOTATION = f"{ANNOTATION}.signed"


def _tag_for(version: str) -> str:
    return version.replace("+", "_")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OciStore(Store):
    def __init__(self, url: str, cache_dir: Path | None = None) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "oci" or not parsed.netloc:
            raise ConfigError(f"bad OCI store URL {url!r}", "write it as oci://HOST:PORT/NAMESPACE")
        self.url = url
        self.host = parsed.netloc
        self.namespace = parsed.path.strip("/")
        query = parse_qs(parsed.query)
        insecure = query.get("insecure", ["0"])[0] in ("1", "true") or _is_loopback(parsed.hostname or "")
        self.scheme = "http" if insecure else "https"
        self.cache_dir = Path(cache_dir) if cache_dir else default_home() / "cache" / "oci"
        self._registry = _make_registry(self.host, insecure)

    def __repr__(self) -> str:
        return f"OciStore({self.url!r})"

    # --- HTTP helpers ---------------------------------------------------------------------------

    def _repository(self, name: str) -> str:
        check_name(name)
        return f"{self.namespace}/{name}" if self.namespace else name

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        url = f"{self.scheme}://{self.host}/v2/{path}"
        try:
            return self._registry.do_request(url, method, **kwargs)
        except requests.exceptions.ConnectionError:
            raise ServiceUnavailable(f"cannot reach the OCI registry at {self.host}") from None

    def _container(self, name: str, tag: str) -> Any:
        import oras.container

        return oras.container.Container(f"{self._repository(name)}:{tag}", registry=self.host)

    def _get_manifest(self, name: str, reference: str) -> dict[str, Any] | None:
        response = self._request(
            "GET", f"{self._repository(name)}/manifests/{reference}", headers={"Accept": OCI_MANIFEST_TYPE}
        )
        if response.status_code == 404:
            return None
        _check(response, f"read {name}:{reference}")
        result: dict[str, Any] = response.json()
        return result

    def _put_manifest(self, name: str, tag: str, manifest: dict[str, Any]) -> None:
        response = self._request(
            "PUT",
            f"{self._repository(name)}/manifests/{tag}",
            data=json.dumps(manifest, sort_keys=True).encode(),
            headers={"Content-Type": OCI_MANIFEST_TYPE},
        )
        _check(response, f"write {name}:{tag}")

    def _tags(self, name: str) -> list[str]:
        response = self._request("GET", f"{self._repository(name)}/tags/list")
        if response.status_code == 404:
            return []
        _check(response, f"list tags of {name}")
        return list(response.json().get("tags") or [])

    def _upload_blob(self, name: str, path: Path, media_type: str) -> dict[str, Any]:
        descriptor = {"mediaType": media_type, "digest": "sha256:" + sha256_file(path), "size": path.stat().st_size}
        response = self._registry.upload_blob(str(path), self._container(name, "latest"), dict(descriptor))
        _check(response, f"upload a blob of {name}")
        return descriptor

    @staticmethod
    def _published_from(manifest: dict[str, Any]) -> Published:
        annotations = manifest.get("annotations") or {}
        try:
            return Published(
                annotations[f"{ANNOTATION}.name"], annotations[f"{ANNOTATION}.version"],
                annotations[f"{ANNOTATION}.digest"],
            )
        except KeyError:
            raise RegistryError(
                "an OCI artifact in the store is not an edgewise bundle (annotations missing)"
            ) from None

    # --- Store ----------------------------------------------------------------------------------

    def publish(self, bundle_dir: Path) -> Published:
        bundle_dir = Path(bundle_dir)
        manifest = check_unsigned_bundle(bundle_dir)
        signed = (bundle_dir / SIGNATURE_NAME).is_file()
        tag = _tag_for(manifest.version)
        existing_manifest = self._get_manifest(manifest.name, tag)
        if existing_manifest is not None:
            existing = self._published_from(existing_manifest)
            check_same_content(existing, manifest)
            already_signed = (existing_manifest.get("annotations") or {}).get(SIGNED_ANNOTATION) == "true"
            if already_signed or not signed:
                return existing
        with tempfile.TemporaryDirectory(prefix="edgewise-oci-push-") as temp:
            tar_path = pack_bundle(bundle_dir, Path(temp) / "bundle.tar")
            config = self._upload_blob(manifest.name, bundle_dir / MANIFEST_NAME, CONFIG_MEDIA_TYPE)
            layer = self._upload_blob(manifest.name, tar_path, LAYER_MEDIA_TYPE)
        layer["annotations"] = {"org.opencontainers.image.title": f"{manifest.name}-{tag}.tar"}
        oci_manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST_TYPE,
            "artifactType": ARTIFACT_TYPE,
            "config": config,
            "layers": [layer],
            "annotations": {
                f"{ANNOTATION}.name": manifest.name,
                f"{ANNOTATION}.version": manifest.version,
                f"{ANNOTATION}.digest": manifest.digest,
                SIGNED_ANNOTATION: "true" if signed else "false",
            },
        }
        self._put_manifest(manifest.name, tag, oci_manifest)
        return Published(manifest.name, manifest.version, manifest.digest)

    def _resolve_manifest(self, ref: str) -> dict[str, Any]:
        parsed = parse_ref(ref)
        if parsed.digest is not None:
            for tag in self._tags(parsed.name):
                candidate = self._get_manifest(parsed.name, tag)
                if candidate is not None and self._published_from(candidate).digest == parsed.digest:
                    return candidate
            raise RegistryError(f"no version of {parsed.name} has digest {parsed.digest} in {self.url}")
        tag = parsed.tag or ""
        found = self._get_manifest(parsed.name, _tag_for(tag)) if VERSION_PATTERN.match(tag) else None
        if found is None and ALIAS_PATTERN.match(tag):
            found = self._get_manifest(parsed.name, ALIAS_TAG_PREFIX + tag)
        if found is None:
            known = ", ".join(p.version for p in self.list(parsed.name)) or "none"
            raise RegistryError(f"{ref} is not in {self.url} (versions of {parsed.name}: {known})")
        return found

    def resolve(self, ref: str) -> Published:
        return self._published_from(self._resolve_manifest(ref))

    def manifest(self, ref: str) -> Manifest:
        oci_manifest = self._resolve_manifest(ref)
        published = self._published_from(oci_manifest)
        response = self._request("GET", f"{self._repository(published.name)}/blobs/{oci_manifest['config']['digest']}")
        _check(response, f"read the manifest of {published.ref}")
        manifest = parse_manifest(response.content, f"the manifest stored for {published.ref}")
        if manifest.digest != published.digest:
            raise RegistryError(f"the manifest stored for {published.ref} does not match its digest")
        return manifest

    def archive_path(self, ref: str) -> Path:
        oci_manifest = self._resolve_manifest(ref)
        published = self._published_from(oci_manifest)
        layers = [layer for layer in oci_manifest.get("layers", []) if layer.get("mediaType") == LAYER_MEDIA_TYPE]
        if len(layers) != 1:
            raise RegistryError(f"{published.ref} in {self.url} does not hold exactly one bundle layer")
        layer_digest = str(layers[0]["digest"])
        cached = self.cache_dir / layer_digest.replace(":", "-") / "bundle.tar"
        # A size check is cheap enough for every call (the fleet server serves from here); the full
        # hash was checked on download, and fetch() checks every file's hash again anyway.
        if cached.is_file() and cached.stat().st_size == int(layers[0].get("size", -1)):
            return cached
        self._download(published.name, layer_digest, cached)
        return cached

    def _download(self, name: str, layer_digest: str, target: Path) -> None:
        """Stream a blob into `target` via a temp file, checking its sha256 before renaming it in."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=".bundle.", suffix=".part", dir=target.parent)
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as handle:
                response = self._request("GET", f"{self._repository(name)}/blobs/{layer_digest}", stream=True)
                _check(response, f"download {layer_digest}")
                for chunk in response.iter_content(chunk_size=1 << 20):
                    digest.update(chunk)
                    handle.write(chunk)
            if "sha256:" + digest.hexdigest() != layer_digest:
                raise RegistryError(f"downloaded blob does not match its digest {layer_digest}; refusing it")
            os.replace(temp_name, target)
        finally:
            Path(temp_name).unlink(missing_ok=True)

    def list(self, name: str | None = None) -> list[Published]:
        names = [name] if name is not None else self._names()
        found: list[Published] = []
        for bundle_name in names:
            tags = [tag for tag in self._tags(bundle_name) if not tag.startswith(ALIAS_TAG_PREFIX)]
            for tag in tags:
                oci_manifest = self._get_manifest(bundle_name, tag)
                if oci_manifest is not None:
                    found.append(self._published_from(oci_manifest))
        return sorted(found, key=lambda p: (p.name, version_sort_key(p.version)))

    def _names(self) -> builtins.list[str]:
        repositories: builtins.list[str] = []
        path: str | None = "_catalog?n=1000"
        while path is not None:  # the catalog is paged; `Link: <...>; rel="next"` names the next page
            response = self._request("GET", path)
            _check(response, "list repositories")
            repositories.extend(response.json().get("repositories") or [])
            next_url = response.links.get("next", {}).get("url")
            path = next_url.split("/v2/", 1)[1] if next_url and "/v2/" in next_url else None
        prefix = f"{self.namespace}/" if self.namespace else ""
        return sorted(r[len(prefix):] for r in repositories if r.startswith(prefix) and "/" not in r[len(prefix):])

    def set_alias(self, name: str, alias: str, version: str) -> None:
        check_alias(alias)
        oci_manifest = self._get_manifest(name, _tag_for(version))
        if oci_manifest is None:
            raise RegistryError(f"cannot point {name}:{alias} at {name}:{version}: that version is not published")
        if VERSION_PATTERN.match(alias) and self._get_manifest(name, _tag_for(alias)) is not None:
            raise RegistryError(f"{alias!r} is a version of {name}; an alias cannot share its name")
        self._put_manifest(name, ALIAS_TAG_PREFIX + alias, oci_manifest)

    def aliases(self, name: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for tag in self._tags(name):
            if tag.startswith(ALIAS_TAG_PREFIX):
                oci_manifest = self._get_manifest(name, tag)
                if oci_manifest is not None:
                    found[tag[len(ALIAS_TAG_PREFIX):]] = self._published_from(oci_manifest).version
        return found


def _check(response: Any, action: str) -> None:
    if response.status_code >= 400:
        raise RegistryError(f"OCI registry refused to {action}: HTTP {response.status_code} {response.text[:200]}")


def _make_registry(host: str, insecure: bool) -> Any:
    """An oras registry client without oras' retry loop (it sleeps minutes on a dead registry)."""
    import oras.provider

    class _NoRetryRegistry(oras.provider.Registry):  # type: ignore[misc]
        do_request = oras.provider.Registry.do_request.__wrapped__

    return _NoRetryRegistry(hostname=host, insecure=insecure)
