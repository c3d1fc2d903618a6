"""`data check`: what is wrong with a detection dataset, counted by kind with example files, and a
cleaned copy that a detector can train on.

A dataset read leniently (`read_dataset(..., strict=False)`) keeps what a strict read refuses,
boxes of unknown classes and unreadable images, so that they are counted here, not raised.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edgewise.core.errors import DatasetError
from edgewise.studio.detect.annotations import AnnotatedImage, DetectionSet
from edgewise.studio.detect.formats._files import image_size

EDGE_TOLERANCE = 0.5  # pixels a box may reach past the image edge: rounding in exporters, not an error
DUPLICATE_IOU = 0.95  # two boxes of one class overlapping more than this are one object drawn twice
EXAMPLES_PER_KIND = 3


@dataclass(frozen=True)
class ProblemKind:
    name: str
    is_error: bool  # info kinds are legal (a background frame) but worth knowing
    meaning: str


PROBLEM_KINDS = (
    ProblemKind("missing_image", True, "image file does not exist"),
    ProblemKind("unreadable_image", True, "image file cannot be read"),
    ProblemKind("size_mismatch", True, "annotated width/height differ from the image file's"),
    ProblemKind("unknown_class", True, "box of a class that is not in the labels"),
    ProblemKind("box_outside_image", True, f"box reaches more than {EDGE_TOLERANCE} px outside the image"),
    ProblemKind("zero_area_box", True, "box with zero or negative width or height"),
    ProblemKind("duplicate_box", True, f"box repeating another of its class (IoU > {DUPLICATE_IOU})"),
    ProblemKind("image_without_boxes", False, "image with no boxes (a background frame)"),
    ProblemKind("crowd_region", False, "COCO iscrowd region (not trained on)"),
)
KIND_BY_NAME = {kind.name: kind for kind in PROBLEM_KINDS}


@dataclass
class CheckReport:
    images: int = 0
    boxes: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KIND_BY_NAME, 0))
    examples: dict[str, list[str]] = field(default_factory=lambda: {name: [] for name in KIND_BY_NAME})

    @property
    def ok(self) -> bool:
        return not self.error_counts()

    def error_counts(self) -> dict[str, int]:
        """The error kinds that were found, with their counts."""
        return {kind.name: self.counts[kind.name] for kind in PROBLEM_KINDS if kind.is_error and self.counts[kind.name]}

    def add(self, kind: str, count: int, example: str) -> None:
        if count <= 0:
            return
        self.counts[kind] += count
        if len(self.examples[kind]) < EXAMPLES_PER_KIND and example not in self.examples[kind]:
            self.examples[kind].append(example)

    def merge(self, other: CheckReport) -> None:
        self.images += other.images
        self.boxes += other.boxes
        for name in KIND_BY_NAME:
            self.counts[name] += other.counts[name]
            new_examples = [example for example in other.examples[name] if example not in self.examples[name]]
            self.examples[name] = (self.examples[name] + new_examples)[:EXAMPLES_PER_KIND]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "images": self.images,
            "boxes": self.boxes,
            "problems": {
                kind.name: {
                    "count": self.counts[kind.name],
                    "error": kind.is_error,
                    "meaning": kind.meaning,
                    "examples": self.examples[kind.name],
                }
                for kind in PROBLEM_KINDS
            },
        }


@dataclass
class CleanResult:
    dataset: DetectionSet
    changes: dict[str, int]  # what was done, e.g. {"clipped": 2, "dropped_duplicate": 1}


def check_dataset(dataset: DetectionSet, name_prefix: str = "") -> CheckReport:
    """Count every problem in `dataset`; examples are `name_prefix + image.file`."""
    report = CheckReport(images=len(dataset.images), boxes=dataset.box_count)
    for image in dataset.images:
        example = name_prefix + image.file
        file_problem = _file_problem(dataset, image)
        if file_problem is not None:
            report.add(file_problem, 1, example)
        for kind, mask in _box_problems(image, len(dataset.labels)).items():
            report.add(kind, int(mask.sum()), example)
        report.add("image_without_boxes", int(len(image.classes) == 0), example)
        report.add("crowd_region", len(image.crowd_boxes), example)
    return report


def check_splits(splits: Mapping[str, DetectionSet]) -> CheckReport:
    """One report over every split; examples are named `<split>/<file>`."""
    report = CheckReport()
    for split, dataset in splits.items():
        report.merge(check_dataset(dataset, name_prefix=f"{split}/"))
    return report


def clean_dataset(dataset: DetectionSet) -> CleanResult:
    """A copy a detector can train on: images whose file is missing, unreadable or of another size are
    dropped (their boxes cannot be trusted), boxes of unknown classes dropped, boxes clipped to the
    image, then those left with no area and duplicates dropped."""
    changes = dict.fromkeys(
        ("dropped_images", "dropped_unknown_class", "clipped", "dropped_zero_area", "dropped_duplicate"), 0
    )
    images: list[AnnotatedImage] = []
    for image in dataset.images:
        if _file_problem(dataset, image) is not None:
            changes["dropped_images"] += 1
            continue
        known = (image.classes >= 0) & (image.classes < len(dataset.labels))
        changes["dropped_unknown_class"] += int((~known).sum())
        boxes, classes = image.boxes[known], image.classes[known]
        changes["clipped"] += int(_outside(boxes, image).sum())
        boxes = np.clip(boxes, 0, [image.width, image.height, image.width, image.height])
        has_area = ~_zero_area(boxes)
        changes["dropped_zero_area"] += int((~has_area).sum())
        boxes, classes = boxes[has_area], classes[has_area]
        repeated = _duplicates(boxes, classes)
        changes["dropped_duplicate"] += int(repeated.sum())
        images.append(replace(image, boxes=boxes[~repeated], classes=classes[~repeated]))
    return CleanResult(DetectionSet(dataset.root, list(dataset.labels), images), changes)


def clean_splits(splits: Mapping[str, DetectionSet]) -> tuple[dict[str, DetectionSet], dict[str, int]]:
    """`clean_dataset` on every split: the cleaned splits and the changes summed over them."""
    results = {split: clean_dataset(dataset) for split, dataset in splits.items()}
    changes: dict[str, int] = {}
    for result in results.values():
        for name, count in result.changes.items():
            changes[name] = changes.get(name, 0) + count
    return {split: result.dataset for split, result in results.items()}, changes


def _file_problem(dataset: DetectionSet, image: AnnotatedImage) -> str | None:
    path = dataset.path_of(image)
    if not path.is_file():
        return "missing_image"
    try:
        size = image_size(path)
    except DatasetError:
        return "unreadable_image"
    return "size_mismatch" if size != (image.width, image.height) else None


def _box_problems(image: AnnotatedImage, label_count: int) -> dict[str, np.ndarray]:
    """A mask over the image's boxes per kind; a box may have several problems."""
    boxes, classes = image.boxes, image.classes
    zero_area = _zero_area(boxes)
    return {
        "unknown_class": (classes < 0) | (classes >= label_count),
        "box_outside_image": _outside(boxes, image),
        "zero_area_box": zero_area,
        "duplicate_box": _duplicates(boxes, classes, candidates=~zero_area),
    }


def _zero_area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])


def _outside(boxes: np.ndarray, image: AnnotatedImage) -> np.ndarray:
    if image.width <= 0 or image.height <= 0:  # size unknown (unreadable image): reported as such
        return np.zeros(len(boxes), dtype=bool)
    low = (boxes[:, :2] < -EDGE_TOLERANCE).any(axis=1)
    high = (boxes[:, 2] > image.width + EDGE_TOLERANCE) | (boxes[:, 3] > image.height + EDGE_TOLERANCE)
    return low | high


def _duplicates(boxes: np.ndarray, classes: np.ndarray, candidates: np.ndarray | None = None) -> np.ndarray:
    """Greedy, in file order: a box repeats an earlier kept box of its class with IoU > DUPLICATE_IOU."""
    candidates = np.ones(len(boxes), dtype=bool) if candidates is None else candidates
    repeated = np.zeros(len(boxes), dtype=bool)
    kept: list[int] = []
    for index in np.flatnonzero(candidates):
        same_class = [other for other in kept if classes[other] == classes[index]]
        if same_class and (_iou(boxes[index], boxes[same_class]) > DUPLICATE_IOU).any():
            repeated[index] = True
        else:
            kept.append(int(index))
    return repeated


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    top_left = np.maximum(box[:2], others[:, :2])
    bottom_right = np.minimum(box[2:], others[:, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    other_areas = np.prod(others[:, 2:] - others[:, :2], axis=1)
    return intersection / (area + other_areas - intersection)
