"""Box annotations in memory: one `DetectionSet` per split, whatever format it came from.

The native form on disk is COCO JSON, one file per split beside its images:

    DIR/{train,val,test}/annotations.json    (COCO: images, annotations, categories)
    DIR/{train,val,test}/images/*.png

Boxes are x1, y1, x2, y2 in the image's pixels (float). Class ids index `labels`; COCO's own
category ids are mapped on reading and written 1-based. Every problem with a file raises a
DatasetError naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ANNOTATIONS_FILE = "annotations.json"
IMAGES_DIR = "images"


@dataclass
class AnnotatedImage:
    file: str  # path relative to the split's folder, '/'-separated
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # (N, 4) float64, x1 y1 x2 y2 pixels
    classes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (N,) indices into labels
    sequence: str | None = None  # video clip the frame belongs to, if any
    frame: int | None = None  # its index in that clip
    # COCO iscrowd=1 regions: not boxes to learn from, but COCO evaluation ignores detections inside them,
    # a COCO round trip keeps them and `data check` counts them.
    crowd_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # (M, 4) like `boxes`
    crowd_classes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (M,)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.classes = np.asarray(self.classes, dtype=np.int64).reshape(-1)
        self.crowd_boxes = np.asarray(self.crowd_boxes, dtype=np.float64).reshape(-1, 4)
        self.crowd_classes = np.asarray(self.crowd_classes, dtype=np.int64).reshape(-1)


@dataclass
class DetectionSet:
    root: Path  # the split's folder: `file`s are relative to it
    labels: list[str]
    images: list[AnnotatedImage]

    @property
    def box_count(self) -> int:
        return sum(len(image.classes) for image in self.images)

    def path_of(self, image: AnnotatedImage) -> Path:
        return self.root / image.file
