"""Detection training data: frames fitted to the model's input once, then augmented per step.

Frames are decoded as a camera gives them (BGR) and fitted by `core.preprocess.Preprocessor`,
the code the agent runs, so the letterbox the detector learns on is the one it is served with.
Augmentation works on the fitted images (uint8, the card's colour order) and their boxes:
mosaic (a 2x2 tiling of four frames, cropped at a random place and scale, as YOLOv4/v5 do, so
every batch sees objects cut at the edges and crowds), scale jitter and shift, horizontal flip,
and brightness / contrast / per-channel gain. `late_epochs_plain` turns mosaic off at the end
(YOLOX's trick): the last epochs see frames as they are served.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from edgewise.core.manifest import InputSpec
from edgewise.core.preprocess import Preprocessor, read_frame
from edgewise.studio.detect.annotations import DetectionSet

MIN_BOX_SIDE = 2.0  # pixels: smaller remains of a cut box are dropped
MIN_KEPT_AREA = 0.35  # a box cut by a crop keeps this share of its area, or is dropped


@dataclass
class Augment:
    mosaic: float = 0.5  # probability per sample
    scale: tuple[float, float] = (0.75, 1.3)
    flip: float = 0.5
    colour: float = 0.3  # brightness/contrast spread
    enabled: bool = True


class FittedFrames:
    """Every frame of a split at the model's input size, with its boxes in input pixels."""

    def __init__(self, dataset: DetectionSet, spec: InputSpec) -> None:
        self.labels = dataset.labels
        self.preprocess = Preprocessor(spec)
        self.height, self.width = self.preprocess.height, self.preprocess.width
        self.pad = int(spec.pad_value or 0)
        self.images: list[np.ndarray] = []
        self.boxes: list[np.ndarray] = []
        self.classes: list[np.ndarray] = []
        for image in dataset.images:
            fitted, placement = self.preprocess.fit(read_frame(dataset.path_of(image)))
            scale = np.array([placement.scale_x, placement.scale_y] * 2)
            shift = np.array([placement.pad_x, placement.pad_y] * 2)
            self.images.append(fitted)
            self.boxes.append(image.boxes * scale + shift)
            self.classes.append(image.classes.copy())

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, index: int, rng: np.random.Generator, augment: Augment
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not augment.enabled:
            return self.images[index], self.boxes[index], self.classes[index]
        if rng.random() < augment.mosaic:
            image, boxes, classes = self._mosaic(index, rng, augment)
        else:
            image, boxes, classes = self._jitter(index, rng, augment)
        if rng.random() < augment.flip:
            image = image[:, ::-1]
            boxes = np.stack([self.width - boxes[:, 2], boxes[:, 1], self.width - boxes[:, 0], boxes[:, 3]], 1)
        return self._colour(image, rng, augment.colour), boxes, classes

    def _warp(self, image: np.ndarray, boxes: np.ndarray, classes: np.ndarray, matrix: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        warped = cv2.warpAffine(image, matrix, (self.width, self.height), flags=cv2.INTER_LINEAR,
                                borderValue=(self.pad, self.pad, self.pad))
        if not len(boxes):
            return warped, boxes.reshape(0, 4), classes
        moved = boxes * matrix[0, 0] + np.array([matrix[0, 2], matrix[1, 2]] * 2)
        clipped = np.clip(moved, 0, [self.width, self.height, self.width, self.height])
        area = np.prod(moved[:, 2:] - moved[:, :2], axis=1)
        kept_area = np.prod(np.clip(clipped[:, 2:] - clipped[:, :2], 0, None), axis=1)
        keep = (kept_area >= MIN_KEPT_AREA * area) & ((clipped[:, 2:] - clipped[:, :2]).min(axis=1) >= MIN_BOX_SIDE)
        return warped, clipped[keep], classes[keep]

    def _jitter(self, index: int, rng: np.random.Generator, augment: Augment
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scale = rng.uniform(*augment.scale)
        dx = rng.uniform(min(0.0, self.width * (1 - scale)), max(0.0, self.width * (1 - scale)))
        dy = rng.uniform(min(0.0, self.height * (1 - scale)), max(0.0, self.height * (1 - scale)))
        matrix = np.array([[scale, 0, dx], [0, scale, dy]], dtype=np.float64)
        return self._warp(self.images[index], self.boxes[index], self.classes[index], matrix)

    def _mosaic(self, index: int, rng: np.random.Generator, augment: Augment
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        chosen = [index, *rng.integers(0, len(self), 3)]
        canvas = np.empty((2 * self.height, 2 * self.width, 3), dtype=np.uint8)
        boxes, classes = [], []
        for slot, member in enumerate(chosen):
            row, col = divmod(slot, 2)
            canvas[row * self.height:(row + 1) * self.height, col * self.width:(col + 1) * self.width] = \
                self.images[member]
            boxes.append(self.boxes[member] + np.array([col * self.width, row * self.height] * 2))
            classes.append(self.classes[member])
        scale = rng.uniform(*augment.scale)
        # A window of the output's size / scale, anywhere in the 2x2 tiling, resized to the output.
        dx = rng.uniform(0, 2 * self.width - self.width / scale)
        dy = rng.uniform(0, 2 * self.height - self.height / scale)
        matrix = np.array([[scale, 0, -dx * scale], [0, scale, -dy * scale]], dtype=np.float64)
        return self._warp(canvas, np.concatenate(boxes), np.concatenate(classes), matrix)

    @staticmethod
    def _colour(image: np.ndarray, rng: np.random.Generator, spread: float) -> np.ndarray:
        gain = rng.uniform(1 - spread, 1 + spread) * rng.uniform(0.92, 1.08, 3)
        contrast = rng.uniform(1 - spread / 2, 1 + spread / 2)
        floats = image.astype(np.float32)
        mean = floats.mean()
        return np.clip((floats - mean) * contrast + mean * gain, 0, 255).astype(np.uint8)


def collate(samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]], preprocess: Preprocessor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input batch, truth boxes (B, M, 4), truth classes (B, M), valid (B, M)), padded to the
    most boxes in the batch."""
    images = np.stack([np.ascontiguousarray(image) for image, _, _ in samples])
    tensor = torch.from_numpy(preprocess.to_tensor(images))
    most = max(1, max(len(classes) for _, _, classes in samples))
    boxes = torch.zeros(len(samples), most, 4)
    classes = torch.full((len(samples), most), -1, dtype=torch.long)
    for row, (_, found, found_classes) in enumerate(samples):
        boxes[row, : len(found_classes)] = torch.from_numpy(np.asarray(found, dtype=np.float32))
        classes[row, : len(found_classes)] = torch.from_numpy(found_classes)
    return tensor, boxes, classes, classes >= 0

