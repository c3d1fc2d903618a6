"""LocalStore specifics: its layout, tampering on disk, URL forms."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgewise.core.archive import pack_bundle
from edgewise.core.errors import ConfigError, InvalidBundle
from edgewise.registry import open_store, parse_ref
from edgewise.registry.local import LocalStore
from tests.registry.bundles import make_bundle


def test_open_store_understands_paths_and_file_urls(tmp_path: Path) -> None:
    assert isinstance(open_store(tmp_path / "a"), LocalStore)
    by_url = open_store(f"file://{tmp_path}/b")
    assert isinstance(by_url, LocalStore) and by_url.root == (tmp_path / "b").resolve()
    with pytest.raises(ConfigError, match="remote host"):
        open_store("file://otherhost/x")
    with pytest.raises(ConfigError, match="unknown bundle store 's3'"):
        open_store("s3://bucket/models")


@pytest.mark.parametrize("ref", ["tiny", "tiny:", "Tiny:1.0", "tiny@sha256:abc", "../x:1.0", "tiny@md5:" + "0" * 32])
def test_bad_references_are_refused_with_the_accepted_forms(ref: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_ref(ref)
    assert "NAME:VERSION" in caught.value.fix


def test_a_bundle_replaced_under_the_same_version_on_disk_is_refused(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.publish(make_bundle(tmp_path, seed=0))
    impostor = make_bundle(tmp_path, seed=1)  # same name and version, other weights
    pack_bundle(impostor, store.archive_path("tiny:1.0.0"))  # someone overwrites the stored tar
    with pytest.raises(InvalidBundle, match="but the store published"):
        store.fetch("tiny:1.0.0", tmp_path / "pulled")
    assert not (tmp_path / "pulled").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".pulled")] == []


def test_half_published_versions_are_invisible(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.publish(make_bundle(tmp_path))
    # a publisher that died mid-way leaves only a hidden staging folder
    shutil.copytree(tmp_path / "store" / "tiny" / "versions" / "1.0.0",
                    tmp_path / "store" / "tiny" / "versions" / ".2.0.0.abc.part")
    assert [p.version for p in store.list("tiny")] == ["1.0.0"]


def test_store_paths_cannot_escape_the_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    with pytest.raises(ConfigError):
        store.list("../outside")
    with pytest.raises(ConfigError):
        store.aliases("../outside")
