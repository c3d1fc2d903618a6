"""Detection datasets on disk: COCO JSON (and the native layout built from it), YOLO txt, Pascal VOC.

Each format reads into and writes from `DetectionSet`s, one per split (`{"train": ..., "val": ...}`);
`read_dataset` tells the format from the path, `write_dataset` writes any of them. Every problem
with a file raises a DatasetError naming the file (and the line or entry).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from edgewise.core.errors import ConfigError, DatasetError
from edgewise.studio.detect.annotations import ANNOTATIONS_FILE, DetectionSet
from edgewise.studio.detect.formats._files import SPLITS, image_name, split_of
from edgewise.studio.detect.formats.coco import read_coco, read_native, write_coco, write_native
from edgewise.studio.detect.formats.voc import read_voc, write_voc
from edgewise.studio.detect.formats.yolo import DATA_YAML, read_yolo, write_yolo

FORMATS = ("coco", "yolo", "voc")
LAYOUTS_HINT = (
    "point at a COCO .json file, a folder with {train,val,test}/annotations.json, a YOLO data.yaml "
    "(or its folder), or a Pascal VOC folder with Annotations/; or name the format with --format"
)

__all__ = [
    "FORMATS",
    "detect_format",
    "image_name",
    "not_kept_by",
    "read_coco",
    "read_dataset",
    "read_native",
    "read_voc",
    "read_yolo",
    "write_coco",
    "write_dataset",
    "write_native",
    "write_voc",
    "write_yolo",
]


def detect_format(path: Path) -> str:
    """ "coco", "yolo" or "voc", from what `path` is or holds."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path} does not exist", LAYOUTS_HINT)
    if path.is_file():
        by_suffix = {".json": "coco", ".yaml": "yolo", ".yml": "yolo"}
        if path.suffix.lower() in by_suffix:
            return by_suffix[path.suffix.lower()]
    elif _native_files(path) or (path / ANNOTATIONS_FILE).is_file():
        return "coco"
    elif _yolo_yaml(path) is not None:
        return "yolo"
    elif (path / "Annotations").is_dir():
        return "voc"
    raise DatasetError(f"cannot tell the annotation format of {path}", LAYOUTS_HINT)


def read_dataset(path: Path, format: str | None = None, *, strict: bool = True) -> dict[str, DetectionSet]:
    """Every split at `path`. `strict=False` keeps unknown classes and unreadable images for `data check`."""
    path = Path(path)
    format = format or detect_format(path)
    if format == "coco":
        if path.is_file():
            return {split_of(path): read_coco(path, strict=strict)}
        if (path / ANNOTATIONS_FILE).is_file() and not _native_files(path):
            return {split_of(path / ANNOTATIONS_FILE): read_coco(path / ANNOTATIONS_FILE, strict=strict)}
        return read_native(path, strict=strict)
    if format == "yolo":
        data_yaml = path if path.is_file() else _yolo_yaml(path)
        if data_yaml is None:
            raise DatasetError(f"{path} has no {DATA_YAML}", "point at the YOLO dataset's data.yaml")
        return read_yolo(data_yaml, strict=strict)
    if format == "voc":
        return read_voc(path, strict=strict)
    raise ConfigError(f"unknown dataset format {format!r}", f"use one of {', '.join(FORMATS)}")


def write_dataset(dataset_or_splits: DetectionSet | Mapping[str, DetectionSet], out: Path, format: str) -> Path:
    """Write into `out`, a new or empty folder; one DetectionSet is written as the `train` split.

    Images are hard-linked where `out` is on the same filesystem, copied otherwise. Returns what
    to point `read_dataset` at: the folder, or the YOLO data.yaml.
    """
    splits = {"train": dataset_or_splits} if isinstance(dataset_or_splits, DetectionSet) else dict(dataset_or_splits)
    writers = {"coco": write_native, "yolo": write_yolo, "voc": write_voc}
    if format not in writers:
        raise ConfigError(f"unknown dataset format {format!r}", f"use one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"{out} already exists and is not empty", "write to a new folder, or delete this one")
    try:
        return writers[format](splits, out)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # it was new or empty: a half-written dataset would pass for whole
        raise


def not_kept_by(format: str, splits: Mapping[str, DetectionSet]) -> list[str]:
    """What writing `splits` as `format` leaves out: YOLO holds no video sequences, neither YOLO nor VOC crowds."""
    images = [image for dataset in splits.values() for image in dataset.images]
    lost = []
    if format != "coco" and any(len(image.crowd_boxes) for image in images):
        lost.append("COCO crowd regions")
    if format == "yolo" and any(image.sequence is not None or image.frame is not None for image in images):
        lost.append("video sequence and frame numbers")
    return lost


def _native_files(folder: Path) -> list[Path]:
    return [folder / split / ANNOTATIONS_FILE for split in SPLITS if (folder / split / ANNOTATIONS_FILE).is_file()]


def _yolo_yaml(folder: Path) -> Path | None:
    """`data.yaml`, else the folder's only YAML file (Ultralytics datasets name it after themselves)."""
    if (folder / DATA_YAML).is_file():
        return folder / DATA_YAML
    candidates = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    return candidates[0] if len(candidates) == 1 else None
