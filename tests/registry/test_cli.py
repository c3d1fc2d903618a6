"""The whole publisher flow through the real command line, as a user types it:
keys new -> bundle create -> sign -> verify -> push (local and OCI) -> pull -> inspect -> registry."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.registry.bundles import tiny_onnx, tree_bytes


def edgewise(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGEWISE_STORE": "", "HOME": str(cwd)}  # never touch the real ~/.edgewise
    return subprocess.run([sys.executable, "-m", "edgewise", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def ok(*args: str | Path, cwd: Path) -> str:
    result = edgewise(*args, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def fails(*args: str | Path, cwd: Path) -> str:
    result = edgewise(*args, cwd=cwd)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and "fix:" in result.stderr
    return result.stderr


@pytest.fixture
def signed_bundle(tmp_path: Path) -> Path:
    ok("keys", "new", "publisher.key", cwd=tmp_path)
    assert (tmp_path / "publisher.key").stat().st_mode & 0o777 == 0o600
    tiny_onnx(tmp_path / "model.onnx")
    tiny_onnx(tmp_path / "fp16.onnx", seed=5)
    out = ok("bundle", "create", "bundle", "--name", "tiny", "--version", "1.0.0", "--onnx", "model.onnx",
             "--precision", "int8", "--families", "cpu", "--variant", "jetson-fp16=fp16.onnx:fp16:jetson",
             "--labels", "cat,dog", cwd=tmp_path)
    assert "tiny:1.0.0 with 2 variant(s)" in out
    assert "with key" in ok("bundle", "sign", "bundle", "--key", "publisher.key", cwd=tmp_path)
    return tmp_path / "bundle"


def test_create_sign_verify_push_pull_inspect_locally(signed_bundle: Path, tmp_path: Path) -> None:
    assert "OK tiny:1.0.0" in ok("bundle", "verify", "bundle", "--trust", "publisher.key.pub", cwd=tmp_path)
    store = tmp_path / "store"
    assert "pushed tiny:1.0.0" in ok("bundle", "push", "bundle", "--store", store, "--alias", "staging", cwd=tmp_path)
    assert "pushed tiny:1.0.0" in ok("bundle", "push", "bundle", "--store", store, cwd=tmp_path)  # no-op
    out = ok("bundle", "pull", "tiny:staging", "pulled", "--store", store, "--trust", "publisher.key.pub",
             cwd=tmp_path)
    assert "(signature verified)" in out
    assert tree_bytes(tmp_path / "pulled") == tree_bytes(signed_bundle)
    shown = ok("bundle", "inspect", "pulled", cwd=tmp_path)
    assert "bundle     tiny:1.0.0" in shown and "jetson-fp16" in shown and "signature  key " in shown
    assert "cat, dog" in shown


def test_push_and_pull_through_a_real_oci_registry(signed_bundle: Path, tmp_path: Path, oci_registry) -> None:  # type: ignore[no-untyped-def]
    store = f"oci://{oci_registry.url}/cli{uuid.uuid4().hex[:8]}"
    ok("bundle", "push", "bundle", "--store", store, "--trust", "publisher.key.pub", cwd=tmp_path)
    ok("bundle", "pull", "tiny:1.0.0", "pulled", "--store", store, "--trust", "publisher.key.pub", cwd=tmp_path)
    assert tree_bytes(tmp_path / "pulled") == tree_bytes(signed_bundle)
    assert "tiny:1.0.0" in ok("bundle", "inspect", "tiny:1.0.0", "--store", store, cwd=tmp_path)


def test_verify_names_the_tampered_file_and_exits_1(signed_bundle: Path, tmp_path: Path) -> None:
    model = signed_bundle / "cpu-int8.onnx"
    model.write_bytes(model.read_bytes()[:-1] + b"\x00")
    error = fails("bundle", "verify", "bundle", "--trust", "publisher.key.pub", cwd=tmp_path)
    assert "file 'cpu-int8.onnx' was modified" in error


def test_verify_refuses_an_untrusted_publisher(signed_bundle: Path, tmp_path: Path) -> None:
    ok("keys", "new", "other.key", cwd=tmp_path)
    assert "untrusted key" in fails("bundle", "verify", "bundle", "--trust", "other.key.pub", cwd=tmp_path)
    # and a pull that demands that publisher leaves nothing behind
    ok("bundle", "push", "bundle", "--store", "store", cwd=tmp_path)
    fails("bundle", "pull", "tiny:1.0.0", "pulled", "--store", "store", "--trust", "other.key.pub", cwd=tmp_path)
    assert not (tmp_path / "pulled").exists()


def test_pushing_other_content_under_a_published_version_fails(signed_bundle: Path, tmp_path: Path) -> None:
    ok("bundle", "push", "bundle", "--store", "store", cwd=tmp_path)
    tiny_onnx(tmp_path / "other.onnx", seed=9)
    ok("bundle", "create", "other", "--name", "tiny", "--version", "1.0.0", "--onnx", "other.onnx",
       "--labels", "cat,dog", "--key", "publisher.key", cwd=tmp_path)
    assert "already published" in fails("bundle", "push", "other", "--store", "store", cwd=tmp_path)


def test_registry_list_show_promote(signed_bundle: Path, tmp_path: Path) -> None:
    ok("bundle", "push", "bundle", "--store", "store", cwd=tmp_path)
    tiny_onnx(tmp_path / "next.onnx", seed=11)
    ok("bundle", "create", "next", "--name", "tiny", "--version", "1.1.0", "--onnx", "next.onnx",
       "--labels", "cat,dog", "--parent", "tiny:1.0.0", "--key", "publisher.key", cwd=tmp_path)
    ok("bundle", "push", "next", "--store", "store", cwd=tmp_path)
    assert "tiny:production -> 1.0.0" in ok("registry", "promote", "tiny:1.0.0", "--store", "store", cwd=tmp_path)
    out = ok("registry", "promote", "tiny:1.1.0", "--store", "store", cwd=tmp_path)
    assert "tiny:production -> 1.1.0" in out and "(was 1.0.0)" in out
    listing = ok("registry", "list", "--store", "store", cwd=tmp_path).splitlines()
    assert listing[1].split()[:3] == ["tiny", "1.0.0", "-"]
    assert listing[2].split()[:3] == ["tiny", "1.1.0", "production"]
    shown = ok("registry", "show", "tiny:production", "--store", "store", cwd=tmp_path)
    assert "chain      tiny:1.1.0 <- tiny:1.0.0" in shown
    assert "is not in" in fails("registry", "show", "tiny:9.0.0", "--store", "store", cwd=tmp_path)


def test_bundle_create_without_a_model_explains_what_to_pass(tmp_path: Path) -> None:
    error = fails("bundle", "create", "b", "--name", "tiny", "--version", "1", cwd=tmp_path)
    assert "nothing to bundle" in error and "--onnx" in error
