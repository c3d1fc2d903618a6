"""The studio commands through the real CLI (`python -m edgewise`), bad input included."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.studio.conftest import TrainedRun


def edgewise(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-m", "edgewise", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit 1, `error: ...` on one line naming the problem, then `fix: ...`, and no traceback."""
    assert result.returncode == 1, result.stderr
    lines = [line.strip() for line in result.stderr.strip().splitlines()]
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("fix: "), lines
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_data_sample_writes_the_folder(tmp_path: Path) -> None:
    result = edgewise("data", "sample", "parts", tmp_path / "p", "--size", "24", "--seed", "2", "--image-size", "40")
    assert result.returncode == 0, result.stderr
    assert "train 16, val 4, test 4" in result.stdout and "digest sha256:" in result.stdout
    from PIL import Image

    assert Image.open(next((tmp_path / "p" / "val" / "ok").glob("*.png"))).size == (40, 40)


def test_list_archs() -> None:
    result = edgewise("train", "--list-archs")
    assert result.returncode == 0
    assert {"cnn-small", "mobilenetv2-tiny", "mobilenetv3-small", "resnet-small"} <= {
        line.split()[0] for line in result.stdout.splitlines()}


def test_missing_dataset_folder(tmp_path: Path) -> None:
    assert_one_line_error(edgewise("train", "--data", tmp_path / "nowhere", "--out", tmp_path / "o"),
                          "dataset folder", "does not exist")


def test_empty_class_folder(small_parts: Path, tmp_path: Path) -> None:
    data = Path(shutil.copytree(small_parts, tmp_path / "d"))
    (data / "train" / "dent").mkdir()
    assert_one_line_error(edgewise("train", "--data", data, "--out", tmp_path / "o"), "dent", "has no images")


def test_corrupt_image(small_parts: Path, tmp_path: Path) -> None:
    data = Path(shutil.copytree(small_parts, tmp_path / "d"))
    broken = next((data / "train" / "ok").glob("*.png"))
    broken.write_text("garbage")
    assert_one_line_error(edgewise("train", "--data", data, "--out", tmp_path / "o"), "cannot read image", broken.name)


def test_unknown_arch(small_parts: Path, tmp_path: Path) -> None:
    result = edgewise("train", "--data", small_parts, "--arch", "resnet-9000", "--out", tmp_path / "o")
    assert_one_line_error(result, "unknown architecture 'resnet-9000'")
    assert "cnn-small" in result.stderr


def test_mismatched_checkpoint(small_parts: Path, tmp_path: Path) -> None:
    from edgewise.studio.zoo import create_model

    plain = tmp_path / "other.pt"
    torch.save(create_model("resnet-tiny", 4).state_dict(), plain)
    assert_one_line_error(edgewise("export", plain, "--arch", "cnn-small", "--out", tmp_path / "m.onnx"),
                          "does not fit 'cnn-small'", "layer")
    assert_one_line_error(
        edgewise("train", "--data", small_parts, "--init", plain, "--arch", "cnn-small", "--out", tmp_path / "o"),
        "does not fit 'cnn-small'")


def test_cli_path_train_export_bench_evaluate(small_parts: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    trained = edgewise("train", "--data", small_parts, "--arch", "resnet-tiny", "--epochs", "1", "--width", "0.5",
                       "--threads", "2", "--device", "cpu", "--out", out, "--no-progress")
    assert trained.returncode == 0, trained.stderr
    assert "test accuracy" in trained.stdout and (out / "best.pt").is_file()
    onnx_path = tmp_path / "m.onnx"
    exported = edgewise("export", out / "best.pt", "--out", onnx_path, "--dynamic-batch")
    assert exported.returncode == 0, exported.stderr
    assert "max abs diff" in exported.stdout and onnx_path.is_file()
    bench = edgewise("bench", onnx_path, "--threads", "1", "--batch", "2", "--runs", "10", "--json")
    assert bench.returncode == 0, bench.stderr
    figures = json.loads(bench.stdout)
    assert figures["batch"] == 2 and figures["p50_ms"] <= figures["p99_ms"] and figures["macs"] > 0
    evaluated = edgewise("evaluate", onnx_path, small_parts, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["num_samples"] == 16 and report["classes"] == ["crack", "hole", "ok", "scratch"]
    table = edgewise("evaluate", out / "best.pt", small_parts)
    assert "confusion" in table.stdout and "precision" in table.stdout


@pytest.mark.usefixtures("trained_small")
def test_evaluate_missing_model(tmp_path: Path, small_parts: Path) -> None:
    assert_one_line_error(edgewise("evaluate", tmp_path / "none.onnx", small_parts), "does not exist")


def test_trained_fixture_is_reusable(trained_small: TrainedRun) -> None:
    assert trained_small.checkpoint.is_file()
