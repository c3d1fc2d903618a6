"""Pascal VOC: one XML file per image.

    Annotations/<id>.xml      size, and an <object> with <name> and <bndbox> per box
    JPEGImages/<id>.<any image suffix>
    ImageSets/Main/<split>.txt  the ids of each split; without it every annotation is `train`
    labels.txt                  ours, optional: the class order (VOC itself has none)

VOC coordinates are 1-based, inclusive pixel indices: a box covering pixels 0..9 of a row (ours
x1=0, x2=10, continuous) is xmin=1, xmax=10. So x1 = xmin - 1 and x2 = xmax, and back: xmin =
x1 + 1, xmax = x2 (as Detectron2 reads VOC). Both directions are exact, so a round trip is
lossless; fractional values are written with every digit. A frame's `sequence` and `frame`
travel as extra <sequence> and <frame_index> elements, which VOC tools ignore.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from edgewise.core.errors import DatasetError
from edgewise.studio.detect.annotations import AnnotatedImage, DetectionSet
from edgewise.studio.detect.formats._files import (
    IMAGE_SUFFIXES,
    SPLITS,
    UNKNOWN_CLASS,
    image_name,
    image_size,
    link_or_copy,
    number,
    require_writable,
    unify_labels,
    write_number,
)

LABELS_FILE = "labels.txt"
CORNERS = ("xmin", "ymin", "xmax", "ymax")


def read_voc(root: Path, labels: list[str] | None = None, *, strict: bool = True) -> dict[str, DetectionSet]:
    """Every split of a VOC folder. Labels: `labels`, else `labels.txt`, else the sorted names found.

    `strict=False` keeps boxes of names outside `labels` as class -1 and an image whose size is
    neither in its XML nor readable from its file as 0x0, for `data check` to count.
    """
    root = Path(root)
    if not (root / "Annotations").is_dir():
        raise DatasetError(f"{root} has no Annotations/ folder", "point at a Pascal VOC folder")
    parsed = {split: [_parse_xml(root, image_id) for image_id in ids] for split, ids in _split_ids(root).items()}
    if labels is None and (root / LABELS_FILE).is_file():
        labels = [
            line.strip() for line in (root / LABELS_FILE).read_text(encoding="utf-8").splitlines() if line.strip()
        ]
    if labels is None:
        labels = sorted({name for entries in parsed.values() for entry in entries for name in entry.names})
    return {
        split: DetectionSet(
            root / "JPEGImages", list(labels), [_annotated(entry, root, labels, strict) for entry in entries]
        )
        for split, entries in parsed.items()
    }


def write_voc(splits: Mapping[str, DetectionSet], out: Path) -> Path:
    """Write `out/Annotations/`, `out/JPEGImages/`, `out/ImageSets/Main/<split>.txt` and `out/labels.txt`."""
    out = Path(out)
    labels, splits = unify_labels(splits)
    (out / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    written: set[str] = set()
    for split, dataset in splits.items():
        require_writable(dataset)
        ids = []
        for image in dataset.images:
            name = image_name(image.file)
            image_id = PurePosixPath(name).with_suffix("").as_posix()
            if image_id in written:
                raise DatasetError(
                    f"two images are both VOC id {image_id!r} (VOC names a file by its stem)", "rename one of them"
                )
            written.add(image_id)
            ids.append(image_id)
            link_or_copy(dataset.path_of(image), out / "JPEGImages" / name)
            xml_path = out / "Annotations" / f"{image_id}.xml"
            xml_path.parent.mkdir(parents=True, exist_ok=True)
            _annotation_tree(image, name, labels).write(xml_path, encoding="utf-8")
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text(
            "".join(f"{image_id}\n" for image_id in ids), encoding="utf-8"
        )
    (out / LABELS_FILE).write_text("".join(f"{name}\n" for name in labels), encoding="utf-8")
    return out


@dataclass
class _VocFile:
    """One XML file, read before the label list is known (it may come from the names found)."""

    image_id: str
    filename: str
    names: list[str]
    boxes: list[list[float]]  # ours: x1 y1 x2 y2, continuous pixels
    width: int
    height: int
    sequence: str | None
    frame: int | None


def _split_ids(root: Path) -> dict[str, list[str]]:
    lists = root / "ImageSets" / "Main"
    found = {split: lists / f"{split}.txt" for split in SPLITS if (lists / f"{split}.txt").is_file()}
    if "train" not in found and (lists / "trainval.txt").is_file():
        found["train"] = lists / "trainval.txt"
    if not found:
        annotations = root / "Annotations"
        return {
            "train": [
                path.relative_to(annotations).with_suffix("").as_posix() for path in sorted(annotations.rglob("*.xml"))
            ]
        }
    return {
        split: [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for split, path in found.items()
    }


def _parse_xml(root: Path, image_id: str) -> _VocFile:
    xml_path = root / "Annotations" / f"{image_id}.xml"
    if not xml_path.is_file():
        raise DatasetError(
            f"{xml_path} does not exist (its id {image_id!r} is listed in ImageSets/Main)",
            "restore the file or remove the id from the list",
        )
    try:
        annotation = ElementTree.parse(xml_path).getroot()
    except ElementTree.ParseError as error:
        line, column = error.position
        raise DatasetError(f"{xml_path}: line {line}, column {column}: bad XML", "fix the file") from None
    names, boxes = [], []
    for position, element in enumerate(annotation.iter("object"), start=1):
        name = (element.findtext("name") or "").strip()
        where = f"{xml_path}: <object> {position} ({name or 'no name'})"
        box = element.find("bndbox")
        if not name or box is None:
            raise DatasetError(f"{where} needs a <name> and a <bndbox>", "fix the object or delete it")
        xmin, ymin, xmax, ymax = (number(box.findtext(corner), f"{where} <{corner}>") for corner in CORNERS)
        names.append(name)
        boxes.append([xmin - 1, ymin - 1, xmax, ymax])
    size = annotation.find("size")
    width, height = (
        (0, 0)
        if size is None
        else (int(number(size.findtext(side), f"{xml_path}: <size> <{side}>")) for side in ("width", "height"))
    )
    frame = annotation.findtext("frame_index")
    return _VocFile(
        image_id,
        (annotation.findtext("filename") or "").strip(),
        names,
        boxes,
        width,
        height,
        annotation.findtext("sequence"),
        None if frame is None else int(number(frame, f"{xml_path}: <frame_index>")),
    )


def _annotated(entry: _VocFile, root: Path, labels: list[str], strict: bool) -> AnnotatedImage:
    images = root / "JPEGImages"
    file = _image_file(images, entry.image_id, entry.filename)
    width, height = entry.width, entry.height
    if width <= 0 or height <= 0:  # some exporters write a 0x0 <size>: the file knows
        try:
            width, height = image_size(images / file)
        except DatasetError:
            if strict:
                raise
            width, height = 0, 0
    unknown = [name for name in entry.names if name not in labels]
    if unknown and strict:
        raise DatasetError(
            f"{root / 'Annotations' / entry.image_id}.xml: class {unknown[0]!r} is not in the labels {labels}",
            f"add it to {LABELS_FILE} or fix the object's <name>",
        )
    classes = np.array(
        [labels.index(name) if name in labels else UNKNOWN_CLASS for name in entry.names], dtype=np.int64
    )
    return AnnotatedImage(
        file,
        width,
        height,
        np.array(entry.boxes, dtype=np.float64).reshape(-1, 4),
        classes,
        entry.sequence,
        entry.frame,
    )


def _image_file(images: Path, image_id: str, filename: str) -> str:
    """The XML's <filename> when that file is there, else `<id>.<any image suffix>`; a missing image keeps
    its expected name, for `data check` to report."""
    for candidate in ([filename] if filename else []) + [f"{image_id}{suffix}" for suffix in sorted(IMAGE_SUFFIXES)]:
        if (images / candidate).is_file():
            return candidate
    return filename or f"{image_id}.jpg"


def _annotation_tree(image: AnnotatedImage, name: str, labels: list[str]) -> ElementTree.ElementTree:
    annotation = ElementTree.Element("annotation")
    ElementTree.SubElement(annotation, "folder").text = "JPEGImages"
    ElementTree.SubElement(annotation, "filename").text = name
    size = ElementTree.SubElement(annotation, "size")
    for tag, value in (("width", image.width), ("height", image.height), ("depth", 3)):
        ElementTree.SubElement(size, tag).text = str(value)
    if image.sequence is not None:
        ElementTree.SubElement(annotation, "sequence").text = image.sequence
    if image.frame is not None:
        ElementTree.SubElement(annotation, "frame_index").text = str(image.frame)
    for (x1, y1, x2, y2), class_index in zip(image.boxes, image.classes, strict=True):
        element = ElementTree.SubElement(annotation, "object")
        ElementTree.SubElement(element, "name").text = labels[class_index]
        ElementTree.SubElement(element, "difficult").text = "0"
        box = ElementTree.SubElement(element, "bndbox")
        for tag, value in zip(CORNERS, (x1 + 1, y1 + 1, x2, y2), strict=True):
            ElementTree.SubElement(box, tag).text = write_number(value)
    ElementTree.indent(annotation)
    return ElementTree.ElementTree(annotation)
