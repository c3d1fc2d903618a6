"""Captured frames -> a dataset that `edgewise train --init CKPT` fine-tunes on.

Frames come from a fleet server (`GET /api/v1/captures`, operator token) or from a device's
capture spool (`capture.sqlite3` in the agent's data dir, or a copy of it). The layout written:

    OUT/train/<label>/<capture_id>.jpg     OUT/val/...  OUT/test/...
    OUT/captures.jsonl                     one CapturedFrame per line (tags, reasons, no image)
    OUT/export.json                        counts per split and label, and how labels were chosen

Labels: with `labels="predicted"` a frame goes to the folder of the serving model's top label
when its score is at least `min_confidence`, otherwise to `unlabelled/`; with `labels="unlabelled"`
every frame goes to `unlabelled/`. Either way the folders are a starting point for a human: move
files between label folders (and out of `unlabelled/`) before training on them for real, since a
model's own predictions teach it nothing new.

Splits are deterministic (by a hash of the capture id), and every split gets every label, since the
trainer requires it: a label with fewer than `min_per_class` frames is folded into `unlabelled/`,
and an `unlabelled/` that is still too small is left out (and counted in export.json).

Frames a detector captured (they carry its boxes) are written as a detection dataset in the native
layout instead (edgewise.studio.detect.annotations), the boxes scaled from the source frame to the
stored JPEG and clipped to it:

    OUT/{train,val,test}/annotations.json  OUT/{train,val,test}/images/<capture_id>.jpg
    OUT/captures.jsonl                     OUT/export.json

The boxes are the serving detector's own predictions, pseudo-labels for a human to correct: their
scores stay in captures.jsonl, not in the annotations; `min_confidence` drops boxes scoring below
it, and `labels="unlabelled"` writes the images without boxes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import ValidationError

from edgewise.core.errors import ConfigError, DatasetError, ServiceUnavailable
from edgewise.core.wire import API_PREFIX, CapturedFrame
from edgewise.studio.detect.annotations import ANNOTATIONS_FILE, IMAGES_DIR, AnnotatedImage, DetectionSet
from edgewise.studio.detect.formats.coco import write_coco

if TYPE_CHECKING:
    import httpx

UNLABELLED = "unlabelled"
SPOOL_FILE = "capture.sqlite3"  # the agent's capture spool (edgewise.agent.capture), a documented format
LabelMode = Literal["predicted", "unlabelled"]
Task = Literal["classify", "detect"]
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class ExportSummary:
    out_dir: str
    frames: int
    written: int
    left_out: int
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    labels: str = "predicted"
    min_confidence: float = 0.0
    note: str = ("labels are the serving model's predictions (or 'unlabelled'): review and move files "
                 "between label folders before training on them")
    task: str = "classify"  # detect: `counts` are boxes per label, `images` the frames per split
    images: dict[str, int] = field(default_factory=dict)


DETECTION_NOTE = ("boxes are the serving detector's predictions (their scores are in captures.jsonl): review "
                  "and correct them before training on them")


def read_spool(path: Path) -> list[CapturedFrame]:
    """Every frame in an agent's capture spool (the file, or the data dir that holds it)."""
    spool = path / SPOOL_FILE if path.is_dir() else path
    if not spool.is_file():
        raise DatasetError(f"no capture spool at {spool}", f"point --from at an agent data dir holding {SPOOL_FILE}")
    try:
        with sqlite3.connect(f"file:{spool}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT meta, jpeg FROM frames ORDER BY created, capture_id").fetchall()
    except sqlite3.DatabaseError as error:
        raise DatasetError(f"{spool} is not a capture spool: {error}", "copy the file again from the device") from None
    return [_with_image(meta, jpeg) for meta, jpeg in rows]


def _with_image(meta: str, jpeg: bytes) -> CapturedFrame:
    frame = CapturedFrame.model_validate_json(meta)
    return frame.model_copy(update={"jpeg_b64": base64.b64encode(jpeg).decode()})


def fetch_from_server(server: str, token: str, page_size: int = 200,
                      transport: httpx.BaseTransport | None = None) -> list[CapturedFrame]:
    """Every captured frame the server stores, page by page (`?offset=&limit=`)."""
    import httpx  # only this path talks to a server; a studio install need not carry httpx

    if not token:
        raise ConfigError("no operator token given", "pass --token (create one with `edgewise server token create`)")
    frames: list[CapturedFrame] = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=60.0, transport=transport) as http:
        for page in _pages(http, page_size):
            frames.extend(page)
    return frames


def _pages(http: httpx.Client, page_size: int) -> Iterator[list[CapturedFrame]]:
    import httpx

    offset = 0
    while True:
        try:
            response = http.get(f"{API_PREFIX}/captures", params={"offset": offset, "limit": page_size,
                                                                    "images": "true"})
        except httpx.HTTPError as error:
            raise ServiceUnavailable(f"GET {API_PREFIX}/captures: {error}") from None
        if response.status_code >= 400:
            raise ServiceUnavailable(f"GET {API_PREFIX}/captures: HTTP {response.status_code}: {response.text[:200]}",
                                     "check the server URL and that the token has the read scope")
        try:
            page = [CapturedFrame.model_validate(item) for item in response.json()["captures"]]
        except (ValueError, KeyError, TypeError, ValidationError) as error:
            raise ServiceUnavailable(f"unexpected /captures response: {error}") from None
        if page:
            yield page
        if len(page) < page_size:
            return
        offset += len(page)


def folder_label(frame: CapturedFrame, labels: LabelMode, min_confidence: float) -> str:
    if labels == "unlabelled" or frame.label is None or (frame.score or 0.0) < min_confidence:
        return UNLABELLED
    return _UNSAFE.sub("_", frame.label).strip("._") or UNLABELLED


def _order_key(capture_id: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{capture_id}".encode()).hexdigest()


def assign_splits(by_label: dict[str, list[CapturedFrame]], val_share: float, test_share: float,
                  seed: int) -> dict[str, dict[str, list[CapturedFrame]]]:
    """split -> label -> frames, at least one frame of each label in each split."""
    splits: dict[str, dict[str, list[CapturedFrame]]] = {"train": {}, "val": {}, "test": {}}
    for label, frames in by_label.items():
        ordered = sorted(frames, key=lambda f: _order_key(f.capture_id, seed))
        n_val = max(1, round(len(ordered) * val_share))
        n_test = max(1, round(len(ordered) * test_share))
        splits["val"][label] = ordered[:n_val]
        splits["test"][label] = ordered[n_val:n_val + n_test]
        splits["train"][label] = ordered[n_val + n_test:]
    return splits


def capture_task(frames: list[CapturedFrame]) -> Task:
    """'detect' when the frames carry a detector's boxes, 'classify' when none does; never both."""
    of_detector = sum(frame.detections is not None for frame in frames)
    if 0 < of_detector < len(frames):
        raise DatasetError(f"{of_detector} of the {len(frames)} captured frames are a detector's, the others a "
                           "classifier's", "export one kind at a time: export_dataset(task='detect' or 'classify')")
    return "detect" if of_detector else "classify"


def export_dataset(frames: list[CapturedFrame], out_dir: Path, *, labels: LabelMode = "predicted",
                   min_confidence: float = 0.0, val_share: float = 0.15, test_share: float = 0.15,
                   min_per_class: int = 3, seed: int = 0, task: Task | None = None) -> ExportSummary:
    """Write `frames` as OUT/{train,val,test}/<label>/*.jpg, or a detector's as a detection dataset.

    `task` keeps only the frames of that kind (the others are left out); by default it is read off
    the frames. See the module docstring.
    """
    if not (0 < val_share < 1 and 0 < test_share < 1 and val_share + test_share < 1):
        raise ConfigError(f"val share {val_share} and test share {test_share} must be in (0, 1) and sum below 1")
    if min_per_class < 3:
        raise ConfigError(f"min per class {min_per_class} is below 3", "every split needs one frame of each label")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"{out_dir} exists and is not empty", "choose a new --out folder")
    if not frames:
        raise DatasetError("there are no captured frames to export", "enable capture on the agents and wait")
    task = task or capture_task(frames)
    kept = [frame for frame in frames if (frame.detections is not None) == (task == "detect")]
    if task == "detect":
        return _export_detections(kept, out_dir, labels, min_confidence, val_share, test_share, seed,
                                  left_out=len(frames) - len(kept))
    return _export_folders(kept, out_dir, labels, min_confidence, val_share, test_share, min_per_class, seed,
                           left_out=len(frames) - len(kept))


def _export_folders(frames: list[CapturedFrame], out_dir: Path, labels: LabelMode, min_confidence: float,
                    val_share: float, test_share: float, min_per_class: int, seed: int,
                    left_out: int) -> ExportSummary:
    if not frames:
        raise DatasetError("there are no captured frames of a classifier to export")
    by_label: dict[str, list[CapturedFrame]] = defaultdict(list)
    for frame in frames:
        by_label[folder_label(frame, labels, min_confidence)].append(frame)
    for label in [name for name, group in by_label.items() if len(group) < min_per_class and name != UNLABELLED]:
        by_label[UNLABELLED].extend(by_label.pop(label))  # too few to split: a human sorts them
    if len(by_label.get(UNLABELLED, [])) < min_per_class:
        left_out += len(by_label.pop(UNLABELLED, []))
    if not by_label:
        raise DatasetError(f"only {len(frames)} captured frames, fewer than {min_per_class} of any label",
                           "capture more frames, or lower --min-per-class (3 at least)")
    summary = ExportSummary(str(out_dir), len(frames) + left_out, 0, left_out, labels=labels,
                            min_confidence=min_confidence)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "captures.jsonl", "w") as index:
        for split, groups in assign_splits(by_label, val_share, test_share, seed).items():
            for label, group in sorted(groups.items()):
                folder = out_dir / split / label
                folder.mkdir(parents=True, exist_ok=True)
                for frame in group:
                    name = _UNSAFE.sub("_", frame.capture_id) + ".jpg"
                    (folder / name).write_bytes(base64.b64decode(frame.jpeg_b64))
                    tags = frame.model_dump(mode="json", exclude={"jpeg_b64"})
                    index.write(json.dumps({"split": split, "folder": label, "file": name, **tags}) + "\n")
                summary.counts.setdefault(split, {})[label] = len(group)
                summary.written += len(group)
    (out_dir / "export.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary


def _export_detections(frames: list[CapturedFrame], out_dir: Path, labels: LabelMode, min_score: float,
                       val_share: float, test_share: float, seed: int, left_out: int) -> ExportSummary:
    """A detector's frames as OUT/{train,val,test}/annotations.json + images/ (see the module docstring)."""
    if len(frames) < 3:
        raise DatasetError(f"only {len(frames)} captured frames of a detector", "capture 3 at least: one per split")
    found = {frame.capture_id: _boxes_in_image(frame, labels, min_score) for frame in frames}
    names = sorted({label for _, _, boxes in found.values() for label, _ in boxes})
    summary = ExportSummary(str(out_dir), len(frames) + left_out, 0, left_out, labels=labels,
                            min_confidence=min_score, note=DETECTION_NOTE, task="detect")
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "captures.jsonl", "w") as index:
        for split, groups in assign_splits({"all": frames}, val_share, test_share, seed).items():
            images = []
            (out_dir / split / IMAGES_DIR).mkdir(parents=True)
            for frame in groups["all"]:
                width, height, boxes = found[frame.capture_id]
                file = f"{IMAGES_DIR}/{_UNSAFE.sub('_', frame.capture_id)}.jpg"
                (out_dir / split / file).write_bytes(base64.b64decode(frame.jpeg_b64))
                images.append(AnnotatedImage(file, width, height, boxes=np.array([box for _, box in boxes]),
                                             classes=np.array([names.index(label) for label, _ in boxes])))
                tags = frame.model_dump(mode="json", exclude={"jpeg_b64"})
                index.write(json.dumps({"split": split, "file": f"{split}/{file}", **tags}) + "\n")
            write_coco(DetectionSet(out_dir / split, names, images), out_dir / split / ANNOTATIONS_FILE)
            summary.counts[split] = dict(sorted(Counter(names[c] for image in images for c in image.classes).items()))
            summary.images[split] = len(images)
            summary.written += len(images)
    (out_dir / "export.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary


def _boxes_in_image(frame: CapturedFrame, labels: LabelMode,
                    min_score: float) -> tuple[int, int, list[tuple[str, list[float]]]]:
    """The JPEG's width and height, and the boxes to write: (label, x1 y1 x2 y2 in the JPEG's pixels)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(base64.b64decode(frame.jpeg_b64))) as decoded:
            width, height = decoded.size
    except (UnidentifiedImageError, OSError, ValueError):
        raise DatasetError(f"capture {frame.capture_id}: its image is not a readable JPEG",
                           "copy the spool again, or delete the frame") from None
    if labels == "unlabelled":
        return width, height, []
    source_w, source_h = frame.frame_size or (width, height)
    scale = np.array([width, height, width, height]) / np.maximum([source_w, source_h, source_w, source_h], 1)
    boxes = []
    for det in frame.detections or []:
        x1, y1, x2, y2 = np.clip(np.array(det.box) * scale, 0, [width, height, width, height]).tolist()
        if det.score >= min_score and x2 > x1 and y2 > y1:  # a box wholly outside the frame clips to nothing
            boxes.append((det.label, [x1, y1, x2, y2]))
    return width, height, boxes
