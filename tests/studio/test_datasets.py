"""Image folders: loading, normalisation, digests and every way a folder can be wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from edgewise.core.errors import DatasetError
from edgewise.studio.datasets import ImageFolder, dataset_digest, load_splits


@pytest.fixture
def parts_copy(small_parts: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(small_parts, tmp_path / "parts"))


def test_image_folder_loads_normalised_tensors(small_parts: Path) -> None:
    dataset = ImageFolder(small_parts, "train", 32)
    assert dataset.classes == ["crack", "hole", "ok", "scratch"]
    image, label = dataset[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert -1.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert label == 0


def test_resizes_to_requested_size(small_parts: Path) -> None:
    assert ImageFolder(small_parts, "val", 20)[0][0].shape == (3, 20, 20)


def test_augment_changes_images_but_not_labels(small_parts: Path) -> None:
    torch.manual_seed(0)
    plain = ImageFolder(small_parts, "train", 32)
    augmented = ImageFolder(small_parts, "train", 32, augment=True)
    differs = [not torch.equal(plain[i][0], augmented[i][0]) for i in range(8)]
    assert any(differs)
    assert [plain[i][1] for i in range(8)] == [augmented[i][1] for i in range(8)]


def test_load_splits_gives_three_loaders(small_parts: Path) -> None:
    splits = load_splits(small_parts, 32, batch_size=16)
    images, labels = next(iter(splits.train))
    assert images.shape == (16, 3, 32, 32) and labels.shape == (16,)
    assert len(splits.test.dataset) == 16 and splits.classes[0] == "crack"


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist") as info:
        ImageFolder(tmp_path / "nope", "train", 32)
    assert "edgewise data sample" in info.value.fix


def test_missing_split(parts_copy: Path) -> None:
    shutil.rmtree(parts_copy / "val")
    with pytest.raises(DatasetError, match="val"):
        load_splits(parts_copy, 32, 8)


def test_empty_class_folder(parts_copy: Path) -> None:
    (parts_copy / "train" / "dent").mkdir()
    with pytest.raises(DatasetError, match="dent.* has no images"):
        ImageFolder(parts_copy, "train", 32)


def test_corrupt_image_is_named(parts_copy: Path) -> None:
    broken = next((parts_copy / "test" / "hole").glob("*.png"))
    broken.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(DatasetError, match=broken.name):
        ImageFolder(parts_copy, "test", 32)


def test_splits_must_share_classes(parts_copy: Path) -> None:
    shutil.rmtree(parts_copy / "test" / "crack")
    with pytest.raises(DatasetError, match="same class folders"):
        load_splits(parts_copy, 32, 8)


def test_digest_tracks_content_and_names(parts_copy: Path) -> None:
    before = dataset_digest(parts_copy)
    assert before.startswith("sha256:") and len(before) == 71
    image = next((parts_copy / "train" / "ok").glob("*.png"))
    image.rename(image.with_name("renamed.png"))
    assert dataset_digest(parts_copy) != before
