"""COCO detection metrics through faster-coco-eval, the maintained C++ port of pycocotools.

We do not write our own AP: the COCO protocol (101-point interpolated precision, IoU 0.50:0.95
in steps of 0.05, greedy matching by score, crowd regions ignored, at most 100 detections per
image) has details every hand-written version gets subtly wrong, and users compare our figures
with the ones Ultralytics, MMDetection and the COCO leaderboard print, which all come from
pycocotools' algorithm. faster-coco-eval gives the same numbers several times faster.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import numpy as np

from edgewise.studio.detect.annotations import DetectionSet

MAX_DETECTIONS = 100


@dataclass
class ImageDetections:
    boxes: np.ndarray  # (N, 4) x1 y1 x2 y2 in the image's pixels
    scores: np.ndarray  # (N,)
    classes: np.ndarray  # (N,) indices into the dataset's labels


@dataclass
class DetectionMetrics:
    map: float  # mAP@[.5:.95]
    map50: float
    map75: float
    ar100: float  # mean recall at 100 detections per image, over IoU 0.5:0.95
    per_class_ap: dict[str, float] = field(default_factory=dict)  # AP@[.5:.95] per label
    per_class_ap50: dict[str, float] = field(default_factory=dict)
    images: int = 0
    boxes: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"map": self.map, "map50": self.map50, "map75": self.map75, "ar100": self.ar100,
                "per_class_ap": self.per_class_ap, "per_class_ap50": self.per_class_ap50,
                "images": self.images, "boxes": self.boxes}


def _ground_truth(dataset: DetectionSet) -> dict[str, object]:
    images, annotations = [], []
    for image_id, image in enumerate(dataset.images, start=1):
        images.append({"id": image_id, "width": image.width, "height": image.height, "file_name": image.file})
        # Crowd regions (iscrowd=1) go to the evaluator, which ignores detections inside them.
        for boxes, classes, is_crowd in ((image.boxes, image.classes, 0), (image.crowd_boxes, image.crowd_classes, 1)):
            for box, class_index in zip(boxes, classes, strict=True):
                x1, y1, x2, y2 = (float(v) for v in box)
                annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                    "category_id": int(class_index) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                    "area": (x2 - x1) * (y2 - y1), "iscrowd": is_crowd})
    categories = [{"id": index + 1, "name": name} for index, name in enumerate(dataset.labels)]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_metrics(dataset: DetectionSet, detections: list[ImageDetections]) -> DetectionMetrics:
    """COCO box metrics of `detections` (one entry per image of `dataset`, same order)."""
    from faster_coco_eval import COCO, COCOeval_faster

    if len(detections) != len(dataset.images):
        raise ValueError(f"{len(detections)} detection lists for {len(dataset.images)} images")
    truth = COCO(_ground_truth(dataset))
    rows = []
    for image_id, found in enumerate(detections, start=1):
        order = np.argsort(-np.asarray(found.scores), kind="stable")[:MAX_DETECTIONS]
        for index in order:
            x1, y1, x2, y2 = (float(v) for v in found.boxes[index])
            rows.append({"image_id": image_id, "category_id": int(found.classes[index]) + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(found.scores[index])})
    empty = DetectionMetrics(0.0, 0.0, 0.0, 0.0, {n: 0.0 for n in dataset.labels}, {n: 0.0 for n in dataset.labels},
                             len(dataset.images), dataset.box_count)
    if not rows or dataset.box_count == 0:
        return empty
    with contextlib.redirect_stdout(io.StringIO()):  # its summary table goes to stdout
        evaluation = COCOeval_faster(truth, truth.loadRes(rows), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = [max(float(v), 0.0) for v in evaluation.stats]  # -1 means "no such boxes": report 0
    precision = np.asarray(evaluation.eval["precision"])  # (IoU, recall, class, area, max dets)
    per_class, per_class50 = {}, {}
    for index, name in enumerate(dataset.labels):
        curve = precision[:, :, index, 0, -1]
        valid = curve[curve > -1]
        per_class[name] = float(valid.mean()) if valid.size else 0.0
        curve50 = precision[0, :, index, 0, -1]
        valid50 = curve50[curve50 > -1]
        per_class50[name] = float(valid50.mean()) if valid50.size else 0.0
    return DetectionMetrics(stats[0], stats[1], stats[2], stats[8], per_class, per_class50,
                            len(dataset.images), dataset.box_count)
