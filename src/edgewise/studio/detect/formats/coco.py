"""COCO JSON, and the native layout built from it (one `annotations.json` per split folder).

COCO boxes are [x, y, width, height] in pixels; ours are x1 y1 x2 y2. Category ids are mapped
to 0-based label indices in the order of their ids, and written back 1-based. A video frame's
`sequence` and `frame` travel as the extra image keys "sequence" and "frame_index", which other
COCO tools ignore, as we ignore keys we do not know.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgewise.core.errors import DatasetError
from edgewise.studio.detect.annotations import ANNOTATIONS_FILE, IMAGES_DIR, AnnotatedImage, DetectionSet
from edgewise.studio.detect.formats._files import (
    SPLITS,
    UNKNOWN_CLASS,
    image_name,
    link_or_copy,
    number,
    require_writable,
    unify_labels,
)


def read_coco(json_path: Path, images_root: Path | None = None, *, strict: bool = True) -> DetectionSet:
    """One COCO file. `file_name`s are relative to `images_root`, by default the file's folder.

    `strict=False` keeps annotations of unlisted categories as class -1 for `data check` to count.
    """
    json_path = Path(json_path)
    document = _load_json(json_path)
    labels, index_of_category = _categories(document, json_path)
    images_by_id = _images(document, json_path)
    boxes: dict[Any, list[list[float]]] = {image_id: [] for image_id in images_by_id}
    classes: dict[Any, list[int]] = {image_id: [] for image_id in images_by_id}
    crowds: dict[Any, list[list[float]]] = {image_id: [] for image_id in images_by_id}
    crowd_classes: dict[Any, list[int]] = {image_id: [] for image_id in images_by_id}
    for position, annotation in enumerate(_entries(document, "annotations", json_path)):
        where = f"{json_path}: annotations[{position}]"
        image_id = annotation.get("image_id")
        if image_id not in images_by_id:
            raise DatasetError(
                f"{where} refers to image_id {image_id!r}, which is not in images",
                "add the image or delete the annotation",
            )
        box = _xyxy(annotation.get("bbox"), where)
        category = annotation.get("category_id")
        if category not in index_of_category and strict:
            raise DatasetError(
                f"{where} has category_id {category!r}, which is not in categories",
                "add the category or fix the annotation's category_id",
            )
        is_crowd = bool(annotation.get("iscrowd", 0))
        (crowds if is_crowd else boxes)[image_id].append(box)
        (crowd_classes if is_crowd else classes)[image_id].append(index_of_category.get(category, UNKNOWN_CLASS))
    root = Path(images_root) if images_root is not None else _default_images_root(json_path, images_by_id)
    images = [
        replace(
            image,
            boxes=np.array(boxes[image_id]).reshape(-1, 4),
            classes=np.array(classes[image_id], dtype=np.int64),
            crowd_boxes=np.array(crowds[image_id]).reshape(-1, 4),
            crowd_classes=np.array(crowd_classes[image_id], dtype=np.int64),
        )
        for image_id, image in images_by_id.items()
    ]
    return DetectionSet(root=root, labels=labels, images=images)


def write_coco(dataset: DetectionSet, json_path: Path) -> None:
    """Write `dataset` as COCO; `file_name`s are written relative to the JSON file's folder."""
    json_path = Path(json_path)
    require_writable(dataset)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, image in enumerate(dataset.images, start=1):
        entry: dict[str, Any] = {
            "id": image_id,
            "file_name": _relative_file(dataset, image, json_path.parent),
            "width": image.width,
            "height": image.height,
        }
        if image.sequence is not None:
            entry["sequence"] = image.sequence
        if image.frame is not None:
            entry["frame_index"] = image.frame
        images.append(entry)
        rows = [(box, int(class_index), 0) for box, class_index in zip(image.boxes, image.classes, strict=True)]
        rows += [
            (box, int(class_index), 1) for box, class_index in zip(image.crowd_boxes, image.crowd_classes, strict=True)
        ]
        for box, class_index, is_crowd in rows:
            x1, y1, x2, y2 = (float(value) for value in box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": class_index + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": is_crowd,
                }
            )
    categories = [{"id": index + 1, "name": name} for index, name in enumerate(dataset.labels)]
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories}), encoding="utf-8"
    )


def read_native(root: Path, *, strict: bool = True) -> dict[str, DetectionSet]:
    """`root/{train,val,test}/annotations.json`: every split that is there."""
    root = Path(root)
    splits = {
        split: read_coco(root / split / ANNOTATIONS_FILE, strict=strict)
        for split in SPLITS
        if (root / split / ANNOTATIONS_FILE).is_file()
    }
    if not splits:
        raise DatasetError(
            f"{root} has no {{train,val,test}}/{ANNOTATIONS_FILE}",
            "point at a dataset folder in the native layout (see docs/detection-data.md)",
        )
    return splits


def write_native(splits: Mapping[str, DetectionSet], out: Path) -> Path:
    """Link or copy every image to `out/<split>/images/<name>` and write each split's annotations."""
    out = Path(out)
    labels, splits = unify_labels(splits)
    for split, dataset in splits.items():
        split_dir = out / split
        images = []
        for image in dataset.images:
            file = f"{IMAGES_DIR}/{image_name(image.file)}"
            link_or_copy(dataset.path_of(image), split_dir / file)
            images.append(replace(image, file=file))
        write_coco(DetectionSet(split_dir, labels, images), split_dir / ANNOTATIONS_FILE)
    return out


def _load_json(json_path: Path) -> dict[str, Any]:
    if not json_path.is_file():
        raise DatasetError(f"annotation file {json_path} does not exist", "check the path")
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DatasetError(
            f"{json_path}: line {error.lineno}: bad JSON ({error.msg})", "fix the file or export it again"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read {json_path}: {error}", "check the file") from None
    if not isinstance(document, dict):
        raise DatasetError(
            f"{json_path} is not a COCO file: expected an object with images, annotations, categories",
            "export the annotations as COCO JSON",
        )
    return document


def _entries(document: dict[str, Any], key: str, json_path: Path) -> list[dict[str, Any]]:
    entries = document.get(key, [] if key == "annotations" else None)
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise DatasetError(f"{json_path}: '{key}' must be a list of objects", "export the annotations as COCO JSON")
    return entries


def _categories(document: dict[str, Any], json_path: Path) -> tuple[list[str], dict[Any, int]]:
    categories = _entries(document, "categories", json_path)
    for position, category in enumerate(categories):
        if not isinstance(category.get("id"), int) or not isinstance(category.get("name"), str):
            raise DatasetError(
                f"{json_path}: categories[{position}] needs an integer 'id' and a 'name'", "fix the category"
            )
    ordered = sorted(categories, key=lambda category: category["id"])
    ids = [category["id"] for category in ordered]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{json_path}: two categories share an id", "give every category its own id")
    return [category["name"] for category in ordered], {category_id: index for index, category_id in enumerate(ids)}


def _images(document: dict[str, Any], json_path: Path) -> dict[Any, AnnotatedImage]:
    images: dict[Any, AnnotatedImage] = {}
    for position, entry in enumerate(_entries(document, "images", json_path)):
        where = f"{json_path}: images[{position}]"
        if "id" not in entry or not isinstance(entry.get("file_name"), str):
            raise DatasetError(f"{where} needs an 'id' and a 'file_name'", "fix the image entry")
        if entry["id"] in images:
            raise DatasetError(f"{where}: image id {entry['id']!r} is used twice", "give every image its own id")
        frame = entry.get("frame_index")
        images[entry["id"]] = AnnotatedImage(
            file=entry["file_name"],
            width=int(number(entry.get("width"), f"{where} width")),
            height=int(number(entry.get("height"), f"{where} height")),
            sequence=None if entry.get("sequence") is None else str(entry["sequence"]),
            frame=None if frame is None else int(number(frame, f"{where} frame_index")),
        )
    return images


def _xyxy(bbox: Any, where: str) -> list[float]:
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise DatasetError(f"{where}: bbox must be [x, y, width, height], got {bbox!r}", "fix the annotation")
    x, y, width, height = (number(value, f"{where} bbox") for value in bbox)
    return [x, y, x + width, y + height]


def _default_images_root(json_path: Path, images: dict[Any, AnnotatedImage]) -> Path:
    """Our files name `images/x.png` from the split's folder; COCO exports often name `x.png` beside an
    `images/` folder: the folder where the first image is found wins."""
    here = json_path.parent
    first = next(iter(images.values()), None)
    if first is not None and not (here / first.file).exists() and (here / IMAGES_DIR / first.file).exists():
        return here / IMAGES_DIR
    return here


def _relative_file(dataset: DetectionSet, image: AnnotatedImage, folder: Path) -> str:
    if dataset.root.resolve() == folder.resolve():
        return image.file
    return Path(os.path.relpath(dataset.path_of(image), folder)).as_posix()
