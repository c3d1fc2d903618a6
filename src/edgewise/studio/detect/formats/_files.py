"""What every format shares: image files, where they go when written, parsing numbers with a place.

An image's *name* is its path under the images folder of its split, '/'-separated
(`clip1/000001.png`). The native layout keeps it as `images/<name>` relative to the split's
folder; YOLO writes it under `images/<split>/`, VOC under `JPEGImages/`. Sub-folders (one per
video clip, say) are kept in every format, so a conversion never renames an image.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgewise.core.errors import DatasetError
from edgewise.studio.detect.annotations import IMAGES_DIR, DetectionSet

SPLITS = ("train", "val", "test")
UNKNOWN_CLASS = -1  # a box whose class is not in the labels, kept only when a file is read leniently
# What Ultralytics lists as image formats, less the ones PIL cannot read without plug-ins.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".mpo"})
EXIF_ORIENTATION = 0x0112
QUARTER_TURNS = {5, 6, 7, 8}  # the EXIF orientations that swap width and height


def image_name(file: str) -> str:
    """`images/clip1/0001.png` -> `clip1/0001.png`: the name an image keeps across formats."""
    prefix = f"{IMAGES_DIR}/"
    return file[len(prefix) :] if file.startswith(prefix) else file


def list_images(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as the frame decoder (OpenCV) sees it, from the file's header only.

    OpenCV turns a JPEG by its EXIF orientation, so a phone photo marked "rotated 90°" is
    decoded with its sides swapped; boxes are drawn on that upright image, so its size counts.
    """
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise DatasetError(f"image {path} does not exist", "restore the image or remove its annotations")
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DatasetError(
            f"cannot read image {path}: {error.__class__.__name__}", "delete or replace the corrupt file"
        ) from error
    return (height, width) if orientation in QUARTER_TURNS else (width, height)


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link costs no space; across filesystems (or where links are refused) copy instead."""
    if not source.is_file():
        raise DatasetError(f"image {source} does not exist", "restore the image or remove its annotations")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def number(text: object, where: str) -> float:
    """A finite float, or a DatasetError naming `where` (file and line or entry)."""
    if text is None:
        raise DatasetError(f"{where} is missing", "add the value")
    try:
        value = float(text)  # type: ignore[arg-type]  # anything float() refuses is reported
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: {text!r} is not a number", "fix or delete the line") from None
    if not math.isfinite(value):
        raise DatasetError(f"{where}: {text!r} is not a finite number", "fix or delete the line")
    return value


def write_number(value: float) -> str:
    """Integral values as integers (what VOC readers expect), others with every digit kept."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def require_writable(dataset: DetectionSet) -> None:
    """Unknown classes have no id to write and a 0x0 image no scale: `data check --clean` drops both."""
    for image in dataset.images:
        if (image.classes < 0).any() or (image.classes >= len(dataset.labels)).any():
            raise DatasetError(
                f"{image.file} has boxes of unknown classes, which cannot be written",
                "run `edgewise data check DIR --clean OUT` and convert the cleaned copy",
            )
        if image.width <= 0 or image.height <= 0:
            raise DatasetError(
                f"{image.file} has no size (its image could not be read)",
                "restore the image, or run `edgewise data check DIR --clean OUT` to drop it",
            )


def unify_labels(splits: Mapping[str, DetectionSet]) -> tuple[list[str], dict[str, DetectionSet]]:
    """YOLO and VOC have one label list for all splits: the union in first-seen order, classes remapped."""
    labels: list[str] = []
    for dataset in splits.values():
        labels += [name for name in dataset.labels if name not in labels]
    remapped: dict[str, DetectionSet] = {}
    for split, dataset in splits.items():
        if dataset.labels == labels:
            remapped[split] = dataset
            continue
        # Indexed by old class; its last entry catches classes outside the split's labels: they stay unknown.
        lookup = np.array([labels.index(name) for name in dataset.labels] + [UNKNOWN_CLASS], dtype=np.int64)
        images = [
            replace(image, classes=_remap(image.classes, lookup), crowd_classes=_remap(image.crowd_classes, lookup))
            for image in dataset.images
        ]
        remapped[split] = DetectionSet(dataset.root, labels, images)
    return labels, remapped


def _remap(classes: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    unknown = len(lookup) - 1
    return lookup[np.where((classes >= 0) & (classes < unknown), classes, unknown)]


def split_of(path: Path) -> str:
    """A lone annotation file belongs to the split its folder is named after, else to `train`."""
    return path.parent.name if path.parent.name in SPLITS else "train"
