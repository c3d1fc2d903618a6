"""OciStore specifics against a real registry: media types, tampering in the registry, failures."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
import requests

from edgewise.core.archive import pack_bundle
from edgewise.core.errors import ConfigError, InvalidBundle, ServiceUnavailable
from edgewise.core.hashing import sha256_file
from edgewise.registry import open_store
from edgewise.registry.oci import ARTIFACT_TYPE, CONFIG_MEDIA_TYPE, LAYER_MEDIA_TYPE, OCI_MANIFEST_TYPE, OciStore
from tests import services
from tests.registry.bundles import make_bundle, tree_bytes


@pytest.fixture
def oci_store(oci_registry, tmp_path: Path) -> OciStore:  # type: ignore[no-untyped-def]
    store = open_store(f"oci://{oci_registry.url}/t{uuid.uuid4().hex[:10]}", cache_dir=tmp_path / "cache")
    assert isinstance(store, OciStore)
    return store


def _manifest(store: OciStore, tag: str) -> dict:  # type: ignore[type-arg]
    response = requests.get(f"http://{store.host}/v2/{store.namespace}/tiny/manifests/{tag}",
                            headers={"Accept": OCI_MANIFEST_TYPE}, timeout=10)
    response.raise_for_status()
    return dict(response.json())


def test_a_bundle_is_an_oci_artifact_with_our_media_types(oci_store: OciStore, tmp_path: Path) -> None:
    published = oci_store.publish(make_bundle(tmp_path, version="1.0.0+build.7"))
    manifest = _manifest(oci_store, "1.0.0_build.7")  # '+' is not allowed in tags
    assert manifest["artifactType"] == ARTIFACT_TYPE
    assert manifest["config"]["mediaType"] == CONFIG_MEDIA_TYPE
    assert [layer["mediaType"] for layer in manifest["layers"]] == [LAYER_MEDIA_TYPE]
    assert manifest["annotations"]["dev.edgewise.bundle.digest"] == published.digest
    assert oci_store.resolve("tiny:1.0.0+build.7") == published


def test_a_bundle_replaced_under_the_same_tag_in_the_registry_is_refused(oci_store: OciStore, tmp_path: Path) -> None:
    oci_store.publish(make_bundle(tmp_path, seed=0))
    # someone with registry access pushes other weights under the same tag, keeping the annotations
    impostor_tar = pack_bundle(make_bundle(tmp_path, seed=1), tmp_path / "impostor.tar")
    genuine = _manifest(oci_store, "1.0.0")
    layer = oci_store._upload_blob("tiny", impostor_tar, LAYER_MEDIA_TYPE)
    genuine["layers"] = [layer]
    oci_store._put_manifest("tiny", "1.0.0", genuine)
    with pytest.raises(InvalidBundle, match="but the store published"):
        oci_store.fetch("tiny:1.0.0", tmp_path / "pulled")
    assert not (tmp_path / "pulled").exists()


def test_a_damaged_cache_is_downloaded_again(oci_store: OciStore, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    oci_store.publish(bundle)
    cached = oci_store.archive_path("tiny:1.0.0")
    assert cached.name == "bundle.tar" and cached.parent.name == "sha256-" + sha256_file(cached)
    good = cached.read_bytes()
    cached.write_bytes(good[:100])  # e.g. a disk that filled up mid-write in an older version
    assert oci_store.archive_path("tiny:1.0.0").read_bytes() == good
    assert tree_bytes(oci_store.fetch("tiny:1.0.0", tmp_path / "pulled")) == tree_bytes(bundle)


def test_a_cache_with_other_content_of_the_same_size_is_caught_by_fetch(oci_store: OciStore, tmp_path: Path) -> None:
    oci_store.publish(make_bundle(tmp_path))
    cached = oci_store.archive_path("tiny:1.0.0")
    cached.write_bytes(b"\0" * cached.stat().st_size)
    with pytest.raises(InvalidBundle):
        oci_store.fetch("tiny:1.0.0", tmp_path / "pulled")
    assert not (tmp_path / "pulled").exists()


def test_an_unreachable_registry_fails_fast_with_a_clear_error(tmp_path: Path) -> None:
    store = open_store(f"oci://127.0.0.1:{services.free_port()}/models", cache_dir=tmp_path)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="cannot reach the OCI registry"):
        store.list()
    assert time.monotonic() - started < 10


def test_plain_http_only_for_loopback_or_when_asked(tmp_path: Path) -> None:
    assert OciStore("oci://127.0.0.1:5000/m", tmp_path).scheme == "http"
    assert OciStore("oci://localhost:5000/m", tmp_path).scheme == "http"
    assert OciStore("oci://registry.example.com/m", tmp_path).scheme == "https"
    assert OciStore("oci://registry.lan:5000/m?insecure=1", tmp_path).scheme == "http"
    with pytest.raises(ConfigError, match="oci://HOST:PORT/NAMESPACE"):
        OciStore("oci:///nohost", tmp_path)


def test_aliases_are_tags_that_never_look_like_versions(oci_store: OciStore, tmp_path: Path) -> None:
    oci_store.publish(make_bundle(tmp_path))
    oci_store.set_alias("tiny", "production", "1.0.0")
    response = requests.get(f"http://{oci_store.host}/v2/{oci_store.namespace}/tiny/tags/list", timeout=10)
    assert sorted(json.loads(response.text)["tags"]) == ["1.0.0", "_alias.production"]
    assert [p.version for p in oci_store.list("tiny")] == ["1.0.0"]
