"""A device's extraction: the signature and digest are checked before any byte is written, and only
the files the signed manifest lists, with their declared sizes, ever reach the disk."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewise.core import strict_json
from edgewise.core.archive import pack_bundle
from edgewise.core.bundle import read_manifest, read_signature, verify_bundle
from edgewise.core.errors import InvalidBundle, SignatureError
from edgewise.core.signing import PrivateKey
from edgewise.core.verified_extract import extract_verified_bundle
from tests.registry.bundles import make_bundle


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


def _tar(path: Path, members: dict[str, bytes], declared: dict[str, int] | None = None) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = (declared or {}).get(name, len(data))
            tar.addfile(info, io.BytesIO(data.ljust(info.size, b"\0")))
    return path


def _members(bundle_dir: Path) -> dict[str, bytes]:
    return {p.relative_to(bundle_dir).as_posix(): p.read_bytes() for p in sorted(bundle_dir.rglob("*")) if p.is_file()}


def _nothing_written(tmp_path: Path, dest: Path) -> None:
    assert not dest.exists()
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}.")]  # no staging left behind


def test_a_good_archive_extracts_exactly_what_is_signed(tmp_path: Path, key: PrivateKey) -> None:
    bundle = make_bundle(tmp_path, key=key)
    archive = pack_bundle(bundle, tmp_path / "b.tar")
    manifest = extract_verified_bundle(archive, tmp_path / "out" / "x", [key.public], read_manifest(bundle).digest)
    assert manifest.digest == read_manifest(bundle).digest
    assert _members(tmp_path / "out" / "x") == _members(bundle)
    assert verify_bundle(tmp_path / "out" / "x", [key.public]).digest == manifest.digest


def test_an_untrusted_signature_writes_nothing(tmp_path: Path, key: PrivateKey) -> None:
    bundle = make_bundle(tmp_path, key=PrivateKey.generate())
    archive = pack_bundle(bundle, tmp_path / "b.tar")
    (tmp_path / "out").mkdir()
    with pytest.raises(SignatureError, match="untrusted key"):
        extract_verified_bundle(archive, tmp_path / "out" / "x", [key.public])
    _nothing_written(tmp_path, tmp_path / "out" / "x")


def test_an_unlisted_member_refuses_the_archive_before_writing(tmp_path: Path, key: PrivateKey) -> None:
    bundle = make_bundle(tmp_path, key=key)
    members = {**_members(bundle), "payload.sh": b"#!/bin/sh\nrm -rf /\n"}
    (tmp_path / "out").mkdir()
    with pytest.raises(InvalidBundle, match="payload.sh.*not listed"):
        extract_verified_bundle(_tar(tmp_path / "t.tar", members), tmp_path / "out" / "x", [key.public])
    _nothing_written(tmp_path, tmp_path / "out" / "x")


def test_an_oversized_member_is_refused_by_its_declared_size(tmp_path: Path, key: PrivateKey) -> None:
    bundle = make_bundle(tmp_path, key=key)
    members = _members(bundle)
    declared = {"model.onnx": len(members["model.onnx"]) + (64 << 20)}  # 64 MiB more than the manifest says
    (tmp_path / "out").mkdir()
    with pytest.raises(InvalidBundle, match="declares"):
        extract_verified_bundle(_tar(tmp_path / "t.tar", members, declared), tmp_path / "out" / "x", [key.public])
    _nothing_written(tmp_path, tmp_path / "out" / "x")


def test_a_swapped_model_is_removed_with_everything_written(tmp_path: Path, key: PrivateKey) -> None:
    bundle = make_bundle(tmp_path, key=key)
    members = _members(bundle)
    members["model.onnx"] = bytes(reversed(members["model.onnx"]))  # same size, other content
    (tmp_path / "out").mkdir()
    with pytest.raises(InvalidBundle, match="does not match the sha256"):
        extract_verified_bundle(_tar(tmp_path / "t.tar", members), tmp_path / "out" / "x", [key.public])
    _nothing_written(tmp_path, tmp_path / "out" / "x")


def test_a_digest_other_than_the_one_asked_for_is_refused(tmp_path: Path, key: PrivateKey) -> None:
    bundle = make_bundle(tmp_path, key=key)
    other = make_bundle(tmp_path, version="2.0.0", key=key)
    (tmp_path / "out").mkdir()
    with pytest.raises(InvalidBundle, match="was asked for"):
        extract_verified_bundle(pack_bundle(bundle, tmp_path / "b.tar"), tmp_path / "out" / "x", [key.public],
                                read_manifest(other).digest)
    _nothing_written(tmp_path, tmp_path / "out" / "x")


def _with_manifest_text(bundle: Path, text: str) -> None:
    (bundle / "bundle.json").write_text(text, encoding="utf-8")


def test_duplicate_keys_in_a_manifest_are_refused(tmp_path: Path, key: PrivateKey) -> None:
    bundle = make_bundle(tmp_path, key=key)
    text = (bundle / "bundle.json").read_text()
    # A second "version": a verifier that keeps the first would see 1.0.0, json.loads keeps 9.9.9.
    _with_manifest_text(bundle, text.replace('"version": "1.0.0"', '"version": "1.0.0", "version": "9.9.9"'))
    with pytest.raises(InvalidBundle, match="duplicate key 'version'"):
        verify_bundle(bundle, [key.public])
    (tmp_path / "out").mkdir()
    with pytest.raises(InvalidBundle, match="duplicate key"):
        extract_verified_bundle(_tar(tmp_path / "t.tar", _members(bundle)), tmp_path / "out" / "x", [key.public])
    _nothing_written(tmp_path, tmp_path / "out" / "x")


def test_duplicate_keys_in_a_signature_are_refused(tmp_path: Path, key: PrivateKey) -> None:
    bundle = make_bundle(tmp_path, key=key)
    signature = json.loads((bundle / "bundle.sig").read_text())
    key_id, value = signature["key_id"], signature["signature"]
    (bundle / "bundle.sig").write_text(f'{{"algorithm": "ed25519", "key_id": "x", "key_id": "{key_id}", '
                                       f'"signature": "{value}"}}')
    with pytest.raises(SignatureError, match="duplicate key 'key_id'"):
        read_signature(bundle)


@pytest.mark.parametrize("depth", [65, 900, 100_000])
def test_deeply_nested_manifests_are_refused_in_one_line(tmp_path: Path, key: PrivateKey, depth: int) -> None:
    bundle = make_bundle(tmp_path, key=key)
    text = (bundle / "bundle.json").read_text()
    _with_manifest_text(bundle, text.replace('"lineage": {', '"deep": ' + "[" * depth + "]" * depth + ', "lineage": {'))
    with pytest.raises(InvalidBundle, match="nested more than 64 levels"):
        verify_bundle(bundle, [key.public])


@pytest.mark.parametrize("text, problem", [
    ('{"a": 1, "a": 2}', "duplicate key"),
    ("[NaN]", "not valid JSON"), ("[1e999]", "finite"), ("[Infinity]", "not valid JSON"),
    ("[9223372036854775808]", "64-bit"), ("[-9223372036854775809]", "64-bit"), ("[" + "9" * 5000 + "]", "64-bit"),
    ('["\\ud800"]', "surrogate"), ('{"\\udfff": 1}', "surrogate"), ('["a\\u0000"]', "NUL"),
    (b'["\xff"]', "UTF-8"), ("[" * 65 + "]" * 65, "nested"), ("{", "not valid JSON"),
])
def test_the_strict_loader_refuses_each_class_with_its_reason(text: str | bytes, problem: str) -> None:
    with pytest.raises(strict_json.StrictJSONError, match=problem):
        strict_json.loads(text)


json_values = st.recursive(st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 63) - 1)
                           | st.floats(allow_nan=False, allow_infinity=False)
                           | st.text(st.characters(codec="utf-8", exclude_characters="\x00")),
                           lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(st.characters(codec="utf-8", exclude_characters="\x00"),
                                                     max_size=8), children, max_size=4), max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_the_strict_loader_reads_back_every_ordinary_document(value: object) -> None:
    assert strict_json.loads(json.dumps(value)) == value
    assert strict_json.loads(json.dumps(value, ensure_ascii=False).encode()) == value
