"""Bundles: create, read, sign, verify, and every tampering rejected with its reason."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewise.core.bundle import create_bundle, read_manifest, sign_bundle, verify_bundle, write_manifest
from edgewise.core.errors import InvalidBundle, SignatureError, TargetIncompatible
from edgewise.core.hashing import canonical_json, sha256_file
from edgewise.core.manifest import Manifest, Variant
from edgewise.core.signing import PrivateKey
from tests.registry.bundles import make_bundle, manifest_for, tiny_onnx


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
def signed(tmp_path: Path, key: PrivateKey) -> Path:
    return make_bundle(tmp_path, key=key)


def test_create_copies_models_and_hashes_every_file(tmp_path: Path) -> None:
    model = tiny_onnx(tmp_path / "m.onnx")
    manifest = create_bundle(tmp_path / "b", manifest_for(), {"model.onnx": model})
    assert (tmp_path / "b" / "model.onnx").read_bytes() == model.read_bytes()
    assert manifest.files == {"model.onnx": sha256_file(model)}
    assert manifest.variants[0].size_bytes == model.stat().st_size
    # what is on disk reads back to the very same canonical bytes, hence the same digest
    assert read_manifest(tmp_path / "b").canonical_bytes() == manifest.canonical_bytes()
    assert read_manifest(tmp_path / "b").digest == manifest.digest


def test_create_refuses_a_non_empty_output_dir(tmp_path: Path) -> None:
    model = tiny_onnx(tmp_path / "m.onnx")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "old.txt").write_text("x")
    with pytest.raises(InvalidBundle, match="not empty"):
        create_bundle(tmp_path / "b", manifest_for(), {"model.onnx": model})


def test_create_refuses_a_variant_without_a_model_file(tmp_path: Path) -> None:
    model = tiny_onnx(tmp_path / "m.onnx")
    manifest = manifest_for(variants=[Variant(name="jetson", file="fp16.onnx")])
    with pytest.raises(InvalidBundle, match="fp16.onnx"):
        create_bundle(tmp_path / "b", manifest, {"model.onnx": model})


@pytest.mark.parametrize("bad_name", ["../evil.onnx", "/abs.onnx", "a/../../b.onnx", "bundle.json", ""])
def test_create_refuses_model_names_outside_the_bundle(tmp_path: Path, bad_name: str) -> None:
    model = tiny_onnx(tmp_path / "m.onnx")
    manifest = manifest_for(variants=[Variant(name="cpu", file=bad_name)])
    with pytest.raises(InvalidBundle):
        create_bundle(tmp_path / "b", manifest, {bad_name: model})
    assert not (tmp_path / "evil.onnx").exists()


def test_read_manifest_names_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(InvalidBundle, match="bundle.json is missing"):
        read_manifest(tmp_path)
    (tmp_path / "bundle.json").write_text("{not json")
    with pytest.raises(InvalidBundle, match="not valid JSON"):
        read_manifest(tmp_path)
    (tmp_path / "bundle.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(InvalidBundle, match="malformed at version"):
        read_manifest(tmp_path)


def test_a_signed_untouched_bundle_verifies(signed: Path, key: PrivateKey) -> None:
    manifest = verify_bundle(signed, [PrivateKey.generate().public, key.public])
    assert manifest.ref == "tiny:1.0.0"
    signature = json.loads((signed / "bundle.sig").read_text())
    assert signature["algorithm"] == "ed25519" and signature["key_id"] == key.public.key_id


# --- every tampering, each in its own test ------------------------------------------------------


def test_one_byte_of_the_model_changed_is_rejected(signed: Path, key: PrivateKey) -> None:
    model = signed / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(InvalidBundle, match=r"file 'model.onnx' was modified"):
        verify_bundle(signed, [key.public])


def test_a_manifest_field_changed_is_rejected(signed: Path, key: PrivateKey) -> None:
    manifest = read_manifest(signed)
    manifest.labels = ["cat", "tiger"]
    write_manifest(signed, manifest)
    with pytest.raises(SignatureError, match="does not match bundle.json"):
        verify_bundle(signed, [key.public])


def test_a_manifest_edit_that_also_rehashes_the_model_is_rejected(signed: Path, key: PrivateKey) -> None:
    # an attacker swaps the model and updates its hash in the manifest: the signature catches it
    tiny_onnx(signed / "model.onnx", seed=7, card=False)
    manifest = read_manifest(signed)
    manifest.files["model.onnx"] = sha256_file(signed / "model.onnx")
    write_manifest(signed, manifest)
    with pytest.raises(SignatureError, match="does not match"):
        verify_bundle(signed, [key.public])


def test_a_file_added_is_rejected(signed: Path, key: PrivateKey) -> None:
    (signed / "extra.py").write_text("print('hi')")
    with pytest.raises(InvalidBundle, match=r"extra.py are in the bundle but not listed"):
        verify_bundle(signed, [key.public])


def test_a_file_removed_is_rejected(signed: Path, key: PrivateKey) -> None:
    (signed / "model.onnx").unlink()
    with pytest.raises(InvalidBundle, match=r"model.onnx listed in bundle.json are missing"):
        verify_bundle(signed, [key.public])


def test_a_symlink_in_the_bundle_is_rejected(signed: Path, key: PrivateKey, tmp_path: Path) -> None:
    outside = tmp_path / "outside.onnx"
    outside.write_bytes((signed / "model.onnx").read_bytes())
    (signed / "model.onnx").unlink()
    os.symlink(outside, signed / "model.onnx")
    with pytest.raises(InvalidBundle, match="not a regular file"):
        verify_bundle(signed, [key.public])


def test_a_signature_from_an_untrusted_key_is_rejected(signed: Path) -> None:
    other = PrivateKey.generate()
    with pytest.raises(SignatureError, match="untrusted key") as caught:
        verify_bundle(signed, [other.public])
    assert other.public.key_id in caught.value.message  # the trusted set is named too


def test_a_missing_signature_is_rejected(signed: Path, key: PrivateKey) -> None:
    (signed / "bundle.sig").unlink()
    with pytest.raises(SignatureError, match="not signed: bundle.sig is missing"):
        verify_bundle(signed, [key.public])


def test_a_signature_made_by_another_key_under_the_trusted_id_is_rejected(signed: Path, key: PrivateKey) -> None:
    forger = PrivateKey.generate()
    sign_bundle(signed, forger)
    data = json.loads((signed / "bundle.sig").read_text())
    data["key_id"] = key.public.key_id  # claims to be the trusted publisher
    (signed / "bundle.sig").write_bytes(canonical_json(data))
    with pytest.raises(SignatureError, match="does not match"):
        verify_bundle(signed, [key.public])


@pytest.mark.parametrize("content", ["", "{}", '{"algorithm":"rsa","key_id":"x","signature":"AA=="}',
                                     '{"algorithm":"ed25519","key_id":"x","signature":"***"}'])
def test_a_malformed_signature_file_is_rejected(signed: Path, key: PrivateKey, content: str) -> None:
    (signed / "bundle.sig").write_text(content)
    with pytest.raises(SignatureError):
        verify_bundle(signed, [key.public])


def test_verify_with_no_trusted_keys_refuses(signed: Path) -> None:
    with pytest.raises(SignatureError, match="no trusted publisher keys"):
        verify_bundle(signed, [])


# --- multi-variant bundles ----------------------------------------------------------------------


def _three_variant_bundle(tmp_path: Path, key: PrivateKey) -> Path:
    files = {
        "cpu-int8.onnx": tiny_onnx(tmp_path / "a.onnx", seed=1),
        "jetson-fp16.onnx": tiny_onnx(tmp_path / "b.onnx", seed=2),
        "coral-int8.onnx": tiny_onnx(tmp_path / "c.onnx", seed=3),
    }
    variants = [
        Variant(name="cpu-int8", file="cpu-int8.onnx", precision="int8", target_families=["cpu"]),
        Variant(name="jetson-fp16", file="jetson-fp16.onnx", precision="fp16", target_families=["jetson"]),
        Variant(name="coral-int8", file="coral-int8.onnx", precision="int8-full", target_families=["coral"]),
    ]
    create_bundle(tmp_path / "multi", manifest_for(variants=variants), files)
    sign_bundle(tmp_path / "multi", key)
    return tmp_path / "multi"


def test_every_variant_is_hashed_signed_and_chosen_by_family(tmp_path: Path, key: PrivateKey) -> None:
    bundle = _three_variant_bundle(tmp_path, key)
    manifest = verify_bundle(bundle, [key.public])
    assert set(manifest.files) == {"cpu-int8.onnx", "jetson-fp16.onnx", "coral-int8.onnx"}
    assert all(v.size_bytes > 0 for v in manifest.variants)
    assert manifest.variant_for(["jetson", "cpu"]).name == "jetson-fp16"
    assert manifest.variant_for(["rpi", "cpu"]).name == "cpu-int8"
    with pytest.raises(TargetIncompatible, match="no variant"):
        manifest.variant_for(["npu-x"])


def test_tampering_with_one_variant_is_rejected(tmp_path: Path, key: PrivateKey) -> None:
    bundle = _three_variant_bundle(tmp_path, key)
    tiny_onnx(bundle / "coral-int8.onnx", seed=99, card=False)
    with pytest.raises(InvalidBundle, match="coral-int8.onnx' was modified"):
        verify_bundle(bundle, [key.public])


# --- canonical form -----------------------------------------------------------------------------

label_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
                     min_size=1, max_size=12)


@settings(max_examples=40, deadline=None)
@given(labels=st.lists(label_text, min_size=1, max_size=5), version=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.+-]{0,8}",
                                                                                    fullmatch=True))
def test_written_manifests_read_back_to_the_same_digest(tmp_path_factory: pytest.TempPathFactory,
                                                        labels: list[str], version: str) -> None:
    folder = tmp_path_factory.mktemp("m")
    manifest = manifest_for(version=version)
    manifest.labels = labels
    write_manifest(folder, manifest)
    again = read_manifest(folder)
    assert again.canonical_bytes() == manifest.canonical_bytes()
    assert Manifest.model_validate_json(again.model_dump_json()).digest == manifest.digest


def test_a_create_that_fails_half_way_leaves_no_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    files = {"a.onnx": tiny_onnx(tmp_path / "a.onnx"), "b.onnx": tiny_onnx(tmp_path / "b.onnx", seed=1)}
    variants = [Variant(name="a", file="a.onnx"), Variant(name="b", file="b.onnx", target_families=["jetson"])]
    real_copy = shutil.copyfile
    calls: list[str] = []

    def copy_then_fail(source: Path, target: Path) -> Path:
        calls.append(str(source))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return Path(real_copy(source, target))

    monkeypatch.setattr(shutil, "copyfile", copy_then_fail)
    (tmp_path / "out").mkdir()
    with pytest.raises(OSError, match="No space left"):
        create_bundle(tmp_path / "out" / "bundle", manifest_for(variants=variants), files)
    assert list((tmp_path / "out").iterdir()) == []
