"""The contract every bundle store keeps, run against LocalStore and OciStore (a real registry)."""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from edgewise.core.bundle import read_manifest, verify_bundle, write_manifest
from edgewise.core.errors import ConfigError, ImmutableVersionError, InvalidBundle, RegistryError
from edgewise.core.signing import PrivateKey
from edgewise.registry import Published, Store
from tests.registry.bundles import make_bundle, tree_bytes

pytestmark = pytest.mark.parametrize("store_url", ["local", "oci"], indirect=True)


def test_round_trip_push_pull_verify_is_byte_identical(store: Store, tmp_path: Path, key: PrivateKey) -> None:
    bundle = make_bundle(tmp_path, key=key)
    published = store.publish(bundle)
    assert published == Published("tiny", "1.0.0", read_manifest(bundle).digest)
    pulled = store.fetch("tiny:1.0.0", tmp_path / "pulled")
    assert tree_bytes(pulled) == tree_bytes(bundle)
    assert verify_bundle(pulled, [key.public]).digest == published.digest


def test_publishing_the_same_content_again_is_a_no_op(store: Store, tmp_path: Path, key: PrivateKey) -> None:
    bundle = make_bundle(tmp_path, key=key)
    first = store.publish(bundle)
    assert store.publish(bundle) == first
    assert store.list() == [first]


def test_different_content_under_a_published_version_fails(store: Store, tmp_path: Path, key: PrivateKey) -> None:
    original = store.publish(make_bundle(tmp_path, key=key, seed=0))
    impostor = make_bundle(tmp_path, key=key, seed=1)  # same name and version, other weights
    with pytest.raises(ImmutableVersionError, match="already published with digest"):
        store.publish(impostor)
    assert store.resolve("tiny:1.0.0") == original
    assert tree_bytes(store.fetch("tiny:1.0.0", tmp_path / "pulled"))["model.onnx"] == (
        tmp_path / "tiny-1.0.0-0" / "model.onnx"
    ).read_bytes()


def test_a_bundle_whose_files_do_not_match_its_manifest_is_not_published(store: Store, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    (bundle / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(InvalidBundle, match="was modified"):
        store.publish(bundle)
    assert store.list() == []


def test_resolve_by_version_alias_and_digest(store: Store, tmp_path: Path) -> None:
    one = store.publish(make_bundle(tmp_path, version="1.0.0"))
    two = store.publish(make_bundle(tmp_path, version="2.0.0", seed=2))
    store.set_alias("tiny", "production", "1.0.0")
    store.set_alias("tiny", "staging", "2.0.0")
    assert store.resolve("tiny:production") == one
    assert store.resolve("tiny:staging") == two
    assert store.resolve(f"tiny@{two.digest}") == two
    assert store.aliases("tiny") == {"production": "1.0.0", "staging": "2.0.0"}


def test_an_alias_moves(store: Store, tmp_path: Path) -> None:
    store.publish(make_bundle(tmp_path, version="1.0.0"))
    store.publish(make_bundle(tmp_path, version="1.1.0", seed=3))
    store.set_alias("tiny", "production", "1.0.0")
    store.set_alias("tiny", "production", "1.1.0")
    assert store.resolve("tiny:production").version == "1.1.0"
    assert store.aliases("tiny") == {"production": "1.1.0"}


def test_an_alias_needs_a_published_version(store: Store, tmp_path: Path) -> None:
    store.publish(make_bundle(tmp_path))
    with pytest.raises(RegistryError, match="not published"):
        store.set_alias("tiny", "production", "9.9.9")
    with pytest.raises(ConfigError, match="bad alias"):
        store.set_alias("tiny", "../x", "1.0.0")


def test_unknown_references_name_what_exists(store: Store, tmp_path: Path) -> None:
    store.publish(make_bundle(tmp_path))
    with pytest.raises(RegistryError, match=r"tiny:2.0.0 is not in .*versions of tiny: 1.0.0"):
        store.resolve("tiny:2.0.0")
    with pytest.raises(RegistryError, match="no version of tiny has digest"):
        store.resolve("tiny@sha256:" + "0" * 64)
    with pytest.raises(ConfigError):
        store.resolve("tiny")


def test_list_sorts_names_and_versions_numerically(store: Store, tmp_path: Path) -> None:
    for index, version in enumerate(["1.10.0", "1.9.0", "1.2.0"]):
        store.publish(make_bundle(tmp_path, version=version, seed=index))
    store.publish(make_bundle(tmp_path, name="alpha", version="0.1.0"))
    assert [p.ref for p in store.list()] == ["alpha:0.1.0", "tiny:1.2.0", "tiny:1.9.0", "tiny:1.10.0"]
    assert [p.version for p in store.list("tiny")] == ["1.2.0", "1.9.0", "1.10.0"]
    assert store.list("nothing-here") == []


def test_archive_path_is_a_local_tar_of_the_bundle(store: Store, tmp_path: Path, key: PrivateKey) -> None:
    bundle = make_bundle(tmp_path, key=key)
    store.publish(bundle)
    archive = store.archive_path("tiny:1.0.0")
    assert archive.is_file()
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["bundle.json", "bundle.sig", "model.onnx"]
    assert store.archive_path("tiny:1.0.0") == archive  # stable, so a server can serve Range requests


def test_manifest_of_a_published_version(store: Store, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    store.publish(bundle)
    assert store.manifest("tiny:1.0.0").canonical_bytes() == read_manifest(bundle).canonical_bytes()


def test_fetch_refuses_a_non_empty_destination(store: Store, tmp_path: Path) -> None:
    store.publish(make_bundle(tmp_path))
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "mine.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not empty"):
        store.fetch("tiny:1.0.0", tmp_path / "dest")
    assert [p.name for p in (tmp_path / "dest").iterdir()] == ["mine.txt"]


def test_a_signature_can_be_added_to_an_unsigned_version(store: Store, tmp_path: Path, key: PrivateKey,
                                                         make_store: Callable[[], Store]) -> None:
    from edgewise.core.bundle import sign_bundle

    bundle = make_bundle(tmp_path)
    first = store.publish(bundle)
    sign_bundle(bundle, key)
    assert store.publish(bundle) == first  # same identity: the signature is not part of it
    pulled = make_store().fetch("tiny:1.0.0", tmp_path / "pulled")
    assert verify_bundle(pulled, [key.public]).digest == first.digest


def test_another_client_sees_what_was_published(store: Store, tmp_path: Path, key: PrivateKey,
                                                make_store: Callable[[], Store]) -> None:
    bundle = make_bundle(tmp_path, key=key)
    store.publish(bundle)
    store.set_alias("tiny", "production", "1.0.0")
    other = make_store()
    assert other.resolve("tiny:production").version == "1.0.0"
    assert tree_bytes(other.fetch("tiny:production", tmp_path / "pulled")) == tree_bytes(bundle)


def test_a_manifest_edited_after_publishing_does_not_change_the_store(store: Store, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    published = store.publish(bundle)
    manifest = read_manifest(bundle)
    manifest.labels = ["x", "y"]
    write_manifest(bundle, manifest)
    with pytest.raises(ImmutableVersionError):
        store.publish(bundle)
    assert store.manifest("tiny:1.0.0").labels == ["cat", "dog"]
    assert store.resolve("tiny:1.0.0") == published


def test_fetch_with_trusted_keys_refuses_an_untrusted_bundle_without_leaving_it(
        store: Store, tmp_path: Path, key: PrivateKey) -> None:
    from edgewise.core.errors import SignatureError

    store.publish(make_bundle(tmp_path))  # unsigned
    with pytest.raises(SignatureError, match="not signed"):
        store.fetch("tiny:1.0.0", tmp_path / "pulled", trusted_keys=[key.public])
    assert not (tmp_path / "pulled").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".pulled")] == []
