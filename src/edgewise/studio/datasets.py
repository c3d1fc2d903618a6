"""Image-folder datasets: `root/{train,val,test}/<class>/*.png|jpg`.

Images are decoded once and kept in memory as uint8 tensors (edge datasets here are small), then
normalised per item. Every problem with the folder raises a DatasetError that names the path.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from edgewise.core.errors import DatasetError
from edgewise.core.hashing import sha256_file

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
# The preprocessing every exported model expects: RGB, scaled to [0, 1], then (x - mean) / std.
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


def list_classes(split_dir: Path) -> list[str]:
    if not split_dir.is_dir():
        raise DatasetError(
            f"dataset split folder {split_dir} does not exist",
            f"create {split_dir} with one sub-folder per class, e.g. `edgewise data sample parts {split_dir.parent}`",
        )
    classes = sorted(entry.name for entry in split_dir.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise DatasetError(f"{split_dir} has no class folders", "put each class's images in its own sub-folder")
    return classes


def load_image(path: Path, image_size: int) -> np.ndarray:
    """Decode one file to (image_size, image_size, 3) uint8 RGB; a broken file is named."""
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            if rgb.size != (image_size, image_size):
                rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DatasetError(
            f"cannot read image {path}: {error.__class__.__name__}", "delete or replace the corrupt file"
        ) from error


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) or (H, W, 3) -> float (N, 3, H, W) / (3, H, W), normalised."""
    floats = images.float().div(255.0).movedim(-1, -3)
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (floats - mean) / std


class ImageFolder(Dataset[tuple[torch.Tensor, int]]):
    """One split of an image folder; `classes` is the sorted list of class folder names."""

    def __init__(self, root: Path, split: str, image_size: int, augment: bool = False,
                 classes: list[str] | None = None) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(
                f"dataset folder {root} does not exist",
                f"check the path, or write a sample: `edgewise data sample parts {root}`",
            )
        split_dir = root / split
        found = list_classes(split_dir)
        if classes is not None and found != classes:
            raise DatasetError(
                f"{split_dir} has classes {found}, but the train split has {classes}",
                "give every split the same class folders",
            )
        self.root, self.split, self.image_size, self.augment = root, split, image_size, augment
        self.classes = found
        self.files: list[Path] = []
        labels: list[int] = []
        for index, name in enumerate(found):
            files = sorted(p for p in (split_dir / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DatasetError(
                    f"class folder {split_dir / name} has no images",
                    "add images (PNG/JPEG) to it or remove the empty folder",
                )
            self.files.extend(files)
            labels.extend([index] * len(files))
        self.labels = torch.tensor(labels, dtype=torch.long)
        self.images = torch.from_numpy(np.stack([load_image(path, image_size) for path in self.files]))
        self._normalized = normalize(self.images)  # once, not per item and epoch

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self._normalized[index]
        if self.augment:
            image = _augment(image)
        return image, int(self.labels[index])


def _augment(image: torch.Tensor) -> torch.Tensor:
    """Small shifts and lighting changes; no flips, because digits and text are not symmetric."""
    pad = max(1, image.shape[-1] // 16)
    padded = torch.nn.functional.pad(image.unsqueeze(0), (pad, pad, pad, pad), mode="replicate").squeeze(0)
    dy, dx = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,)))
    shifted = padded[:, dy : dy + image.shape[-2], dx : dx + image.shape[-1]]
    contrast = 1.0 + (torch.rand(1) - 0.5) * 0.3
    brightness = (torch.rand(1) - 0.5) * 0.3
    return shifted * contrast + brightness


@dataclass
class DataSplits:
    train: DataLoader[tuple[torch.Tensor, int]]
    val: DataLoader[tuple[torch.Tensor, int]]
    test: DataLoader[tuple[torch.Tensor, int]]
    classes: list[str]


def load_splits(root: Path, image_size: int, batch_size: int, augment: bool = True,
                num_workers: int = 0, seed: int = 0) -> DataSplits:
    """Loaders for train (shuffled, optionally augmented), val and test."""
    train_set = ImageFolder(root, "train", image_size, augment=augment)
    val_set = ImageFolder(root, "val", image_size, classes=train_set.classes)
    test_set = ImageFolder(root, "test", image_size, classes=train_set.classes)
    generator = torch.Generator().manual_seed(seed)

    def loader(dataset: ImageFolder, shuffle: bool) -> DataLoader[tuple[torch.Tensor, int]]:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                          generator=generator if shuffle else None)

    return DataSplits(loader(train_set, True), loader(val_set, False), loader(test_set, False), train_set.classes)


def dataset_digest(root: Path) -> str:
    """`sha256:` over every file's relative path and content hash, in sorted order."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist", "check the path")
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(sha256_file(path).encode())
        digest.update(b"\n")
    return "sha256:" + digest.hexdigest()
