"""Packing is deterministic; extraction refuses every unsafe member and is atomic."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import time
from pathlib import Path

import pytest

from edgewise.core.archive import extract_bundle, pack_bundle
from edgewise.core.bundle import verify_bundle
from edgewise.core.errors import ConfigError, InvalidBundle
from edgewise.core.signing import PrivateKey
from tests.registry.bundles import make_bundle, tree_bytes


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
def bundle(tmp_path: Path, key: PrivateKey) -> Path:
    return make_bundle(tmp_path, key=key)


def _evil_tar(path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_packing_is_deterministic(bundle: Path, tmp_path: Path) -> None:
    first = pack_bundle(bundle, tmp_path / "a.tar").read_bytes()
    later = time.time() + 3600
    for path in bundle.iterdir():
        os.utime(path, (later, later))
        path.chmod(0o600)
    assert pack_bundle(bundle, tmp_path / "b.tar").read_bytes() == first


def test_packed_members_are_sorted_and_anonymous(bundle: Path, tmp_path: Path) -> None:
    with tarfile.open(pack_bundle(bundle, tmp_path / "a.tar")) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["bundle.json", "bundle.sig", "model.onnx"]
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" and m.mode == 0o644 for m in members)


def test_pack_then_extract_is_byte_identical_and_still_verifies(bundle: Path, tmp_path: Path, key: PrivateKey) -> None:
    out = extract_bundle(pack_bundle(bundle, tmp_path / "a.tar"), tmp_path / "out")
    assert tree_bytes(out) == tree_bytes(bundle)
    assert verify_bundle(out, [key.public]).ref == "tiny:1.0.0"


def test_pack_refuses_a_symlink_in_the_bundle(bundle: Path, tmp_path: Path) -> None:
    os.symlink("/etc/passwd", bundle / "passwd")
    with pytest.raises(InvalidBundle, match="not a regular file"):
        pack_bundle(bundle, tmp_path / "a.tar")
    assert not (tmp_path / "a.tar").exists()


def test_a_gzip_archive_extracts_too(bundle: Path, tmp_path: Path) -> None:
    plain = pack_bundle(bundle, tmp_path / "a.tar").read_bytes()
    (tmp_path / "a.tar.gz").write_bytes(gzip.compress(plain, mtime=0))
    assert tree_bytes(extract_bundle(tmp_path / "a.tar.gz", tmp_path / "out")) == tree_bytes(bundle)


# --- unsafe archives ----------------------------------------------------------------------------


def test_a_path_traversal_member_is_refused(tmp_path: Path) -> None:
    tar = _evil_tar(tmp_path / "evil.tar", _file("bundle.json"), _file("../escaped.txt"))
    with pytest.raises(InvalidBundle, match=r"'../escaped.txt' escapes the bundle"):
        extract_bundle(tar, tmp_path / "out" / "b")
    assert not (tmp_path / "out" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "out" / "b").exists() and _leftovers(tmp_path / "out") == []


def test_a_nested_traversal_member_is_refused(tmp_path: Path) -> None:
    tar = _evil_tar(tmp_path / "evil.tar", _file("models/../../x"))
    with pytest.raises(InvalidBundle, match="escapes"):
        extract_bundle(tar, tmp_path / "out")


def test_an_absolute_member_is_refused(tmp_path: Path) -> None:
    tar = _evil_tar(tmp_path / "evil.tar", _file("/tmp/edgewise-absolute-test"))
    with pytest.raises(InvalidBundle, match="absolute path"):
        extract_bundle(tar, tmp_path / "out")
    assert not Path("/tmp/edgewise-absolute-test").exists()


def test_a_symlink_member_is_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("model.onnx")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    tar = _evil_tar(tmp_path / "evil.tar", (link, None))
    with pytest.raises(InvalidBundle, match="is a symlink to '/etc/passwd'"):
        extract_bundle(tar, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_hardlink_member_is_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("model.onnx")
    link.type = tarfile.LNKTYPE
    link.linkname = "bundle.json"
    tar = _evil_tar(tmp_path / "evil.tar", _file("bundle.json"), (link, None))
    with pytest.raises(InvalidBundle, match="hard link"):
        extract_bundle(tar, tmp_path / "out")


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_device_and_fifo_members_are_refused(tmp_path: Path, kind: bytes) -> None:
    special = tarfile.TarInfo("dev")
    special.type = kind
    tar = _evil_tar(tmp_path / "evil.tar", (special, None))
    with pytest.raises(InvalidBundle, match="device, FIFO"):
        extract_bundle(tar, tmp_path / "out")


def test_an_oversized_member_is_refused(tmp_path: Path) -> None:
    tar = _evil_tar(tmp_path / "big.tar", _file("model.onnx", b"\0" * 5000))
    with pytest.raises(InvalidBundle, match="over the 4096-byte limit"):
        extract_bundle(tar, tmp_path / "out", max_bytes=4096)
    assert not (tmp_path / "out").exists()


def test_members_that_add_up_past_the_limit_are_refused(tmp_path: Path) -> None:
    tar = _evil_tar(tmp_path / "big.tar", _file("a", b"\0" * 3000), _file("b", b"\0" * 3000))
    with pytest.raises(InvalidBundle, match="exceed the 4096-byte limit"):
        extract_bundle(tar, tmp_path / "out", max_bytes=4096)


def test_a_duplicate_member_is_refused(tmp_path: Path) -> None:
    tar = _evil_tar(tmp_path / "dup.tar", _file("model.onnx", b"good"), _file("./model.onnx", b"evil"))
    with pytest.raises(InvalidBundle, match="appears twice"):
        extract_bundle(tar, tmp_path / "out")


def test_a_file_that_is_not_a_tar_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.tar").write_bytes(b"this is not a tar archive at all" * 40)
    with pytest.raises(InvalidBundle, match="not a readable tar"):
        extract_bundle(tmp_path / "junk.tar", tmp_path / "out")


def test_a_truncated_archive_leaves_nothing_behind(bundle: Path, tmp_path: Path) -> None:
    tar_path = pack_bundle(bundle, tmp_path / "a.tar")
    with tarfile.open(tar_path) as tar:
        model_starts_at = tar.getmember("model.onnx").offset_data
    (tmp_path / "cut.tar").write_bytes(tar_path.read_bytes()[: model_starts_at + 10])  # model half written
    (tmp_path / "dest").mkdir()
    with pytest.raises(InvalidBundle):
        extract_bundle(tmp_path / "cut.tar", tmp_path / "dest" / "bundle")
    assert list((tmp_path / "dest").iterdir()) == []  # neither a half bundle nor a temp folder


def test_extract_refuses_a_non_empty_destination(bundle: Path, tmp_path: Path) -> None:
    tar = pack_bundle(bundle, tmp_path / "a.tar")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        extract_bundle(tar, tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_extract_into_an_existing_empty_directory_works(bundle: Path, tmp_path: Path) -> None:
    tar = pack_bundle(bundle, tmp_path / "a.tar")
    (tmp_path / "out").mkdir()
    assert tree_bytes(extract_bundle(tar, tmp_path / "out")) == tree_bytes(bundle)
