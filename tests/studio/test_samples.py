"""Sample datasets: layout, determinism, the parts renderer, bad options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgewise.core.errors import ConfigError
from edgewise.studio.datasets import dataset_digest
from edgewise.studio.samples import write_sample
from edgewise.studio.samples.parts import CLASSES, render_part


def _count(root: Path, split: str) -> dict[str, int]:
    return {d.name: len(list(d.glob("*.png"))) for d in sorted((root / split).iterdir())}


def test_parts_layout_is_stratified(small_parts: Path) -> None:
    counts = {split: _count(small_parts, split) for split in ("train", "val", "test")}
    assert set(counts["train"]) == set(CLASSES)
    assert all(len(set(c.values())) == 1 for c in counts.values()), counts  # balanced per split
    assert sum(sum(c.values()) for c in counts.values()) == 120
    assert counts["train"]["ok"] > counts["val"]["ok"] >= 1


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    first = write_sample("parts", tmp_path / "a", size=24, seed=7)
    again = write_sample("parts", tmp_path / "b", size=24, seed=7)
    other = write_sample("parts", tmp_path / "c", size=24, seed=8)
    assert dataset_digest(first) == dataset_digest(again)
    assert dataset_digest(first) != dataset_digest(other)


def test_digits_are_real_scans_upscaled(tmp_path: Path) -> None:
    root = write_sample("digits", tmp_path / "digits", size=200, seed=0, image_size=24)
    counts = _count(root, "train")
    assert sorted(counts) == [str(d) for d in range(10)]
    from PIL import Image

    image = Image.open(next((root / "test" / "3").glob("*.png")))
    assert image.size == (24, 24) and image.mode == "RGB"
    pixels = np.asarray(image)
    assert pixels.min() < 80 and pixels.max() > 200  # dark ink on light paper


@pytest.mark.parametrize("label", CLASSES)
def test_render_part_is_deterministic_rgb(label: str) -> None:
    frame = render_part(label, np.random.default_rng(5), 48)
    assert frame.shape == (48, 48, 3) and frame.dtype == np.uint8
    assert np.array_equal(frame, render_part(label, np.random.default_rng(5), 48))
    assert frame.std() > 10  # a part on a belt, not a flat image


def test_defects_change_the_part() -> None:
    # Same generator state for shape/pose: a defect must visibly change pixels versus "ok".
    ok = render_part("ok", np.random.default_rng(1), 64).astype(int)
    for label in ("scratch", "hole", "crack"):
        assert np.abs(render_part(label, np.random.default_rng(1), 64).astype(int) - ok).mean() > 0.5


def test_render_part_rejects_unknown_class() -> None:
    with pytest.raises(ConfigError, match="dent"):
        render_part("dent", np.random.default_rng(0), 32)


def test_unknown_sample_and_bad_sizes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown sample dataset 'cifar'"):
        write_sample("cifar", tmp_path)
    with pytest.raises(ConfigError, match="too small"):
        write_sample("parts", tmp_path, size=3)
    with pytest.raises(ConfigError, match="image-size"):
        write_sample("parts", tmp_path, image_size=2)


def test_refuses_to_write_over_an_existing_dataset(small_parts: Path) -> None:
    with pytest.raises(ConfigError, match="already holds a dataset"):
        write_sample("parts", small_parts, size=12)


def test_parts_renderer_does_not_import_torch() -> None:
    code = "import sys, edgewise.studio.samples.parts; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["parts", "digits"])
def test_writers_report_progress_after_every_image(name: str, tmp_path: Path) -> None:
    # the new user's case: `data sample parts` ran 20 s with nothing on screen
    calls: list[tuple[int, int]] = []
    written = write_sample(name, tmp_path / name, size=40, on_image=lambda done, total: calls.append((done, total)))
    images = sum(1 for _ in written.rglob("*.png"))
    assert calls == [(done, images) for done in range(1, images + 1)]


def test_shapes_has_every_class_in_every_split_and_marks_differ_from_blank(tmp_path: Path) -> None:
    import numpy as np

    from edgewise.studio.samples import write_sample
    from edgewise.studio.samples.shapes import CLASSES as SHAPES
    from edgewise.studio.samples.shapes import render_shape

    root = write_sample("shapes", tmp_path / "shapes", size=80, seed=2)
    for split in ("train", "val", "test"):
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(SHAPES)
    first = render_shape("ring", np.random.default_rng(5), 32)
    assert first.shape == (32, 32, 3) and np.array_equal(first, render_shape("ring", np.random.default_rng(5), 32))
    blank = render_shape("blank", np.random.default_rng(5), 32).astype(float)
    for label in SHAPES[1:]:  # the same surface with a mark on it: the mark changes pixels
        assert np.abs(render_shape(label, np.random.default_rng(5), 32).astype(float) - blank).max() > 60, label
