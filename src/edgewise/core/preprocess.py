"""Frame -> model input tensor: the one implementation the studio and the agent both run.

A frame is an HxWx3 uint8 array in BGR order (OpenCV's convention; every agent source emits it
and the studio decodes dataset files with OpenCV too), so a model evaluated in the studio sees
bit-for-bit the tensor it will see on a device. The steps, all fixed by the model's `InputSpec`:

1. fit the frame to the model's size: `stretch` (resize, aspect not kept), `letterbox` (resize to
   fit, pad the rest with `pad_value`, centred) or `center-crop` (resize to cover the size divided
   by `crop_fraction`, cut the centre);
2. colour order: BGR frames become RGB or grey when the model reads those;
3. `(pixel * scale - mean) / std` for float inputs (uint8 inputs take the pixels as they are);
4. layout NCHW or NHWC, batch first.

Resizing is OpenCV's bilinear (`INTER_LINEAR`), the interpolation devices use. OpenCV comes with
the agent and studio extras; nothing else in core needs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edgewise.core.errors import DatasetError, ModelError
from edgewise.core.manifest import InputSpec

_DTYPES: dict[str, type[np.generic]] = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8,
                                        "int8": np.int8}


@dataclass(frozen=True)
class Placement:
    """Where the model's input sits in the frame: frame_x = (input_x - pad_x) / scale_x (same for y)."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float

    def to_frame(self, box: Sequence[float]) -> tuple[float, float, float, float]:
        x1, y1, x2, y2 = box
        return ((x1 - self.pad_x) / self.scale_x, (y1 - self.pad_y) / self.scale_y,
                (x2 - self.pad_x) / self.scale_x, (y2 - self.pad_y) / self.scale_y)


class Preprocessor:
    """Frames -> input tensors for one InputSpec; per-channel constants are folded once."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec
        self.dtype = _DTYPES[spec.dtype]
        self.height, self.width = spec.resize
        self.channels = 1 if spec.color_order == "GRAY" else 3
        std = np.asarray(spec.std[: self.channels], dtype=np.float32)
        # (x * scale - mean) / std == x * (scale / std) - mean / std: one multiply, one add
        self.alpha = (spec.scale / std).astype(np.float32)
        self.beta = (-np.asarray(spec.mean[: self.channels], dtype=np.float32) / std).astype(np.float32)

    def fit(self, frame: np.ndarray) -> tuple[np.ndarray, Placement]:
        """The frame at the model's size and colour order (uint8 HxWxC) and where it came from."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ModelError(f"frame has shape {frame.shape} and type {frame.dtype}, expected HxWx3 uint8 (BGR)",
                             "check the video source or the image file")
        mode = self.spec.resize_mode or "stretch"
        frame_h, frame_w = frame.shape[:2]
        if mode == "stretch":
            image = self._resize(frame, self.width, self.height)
            placement = Placement(self.width / frame_w, self.height / frame_h, 0.0, 0.0)
        elif mode == "letterbox":
            scale = min(self.width / frame_w, self.height / frame_h)
            new_w, new_h = max(1, round(frame_w * scale)), max(1, round(frame_h * scale))
            resized = self._resize(frame, new_w, new_h)
            left, top = (self.width - new_w) // 2, (self.height - new_h) // 2
            pad = int(self.spec.pad_value if self.spec.pad_value is not None else 0)
            image = cv2.copyMakeBorder(resized, top, self.height - new_h - top, left, self.width - new_w - left,
                                       cv2.BORDER_CONSTANT, value=(pad, pad, pad))
            placement = Placement(new_w / frame_w, new_h / frame_h, float(left), float(top))
        else:  # center-crop: cover (size / crop_fraction), then keep the centre
            fraction = self.spec.crop_fraction or 1.0
            scale = max(self.width / fraction / frame_w, self.height / fraction / frame_h)
            new_w, new_h = max(self.width, round(frame_w * scale)), max(self.height, round(frame_h * scale))
            resized = self._resize(frame, new_w, new_h)
            left, top = (new_w - self.width) // 2, (new_h - self.height) // 2
            image = resized[top : top + self.height, left : left + self.width]
            placement = Placement(new_w / frame_w, new_h / frame_h, float(-left), float(-top))
        if self.spec.color_order == "RGB":
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        elif self.spec.color_order == "GRAY":
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[:, :, None]
        return np.ascontiguousarray(image), placement

    def _resize(self, frame: np.ndarray, width: int, height: int) -> np.ndarray:
        if frame.shape[1] == width and frame.shape[0] == height:
            return frame
        return np.asarray(cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR))

    def to_tensor(self, images: np.ndarray) -> np.ndarray:
        """Fitted uint8 images (N, H, W, C) -> the model's input batch."""
        tensor: np.ndarray
        if self.dtype in (np.float32, np.float16):
            tensor = np.multiply(images, self.alpha, dtype=np.float32)
            tensor += self.beta
        else:
            tensor = images
        if self.spec.layout == "NCHW":
            tensor = tensor.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(tensor, dtype=self.dtype)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """One frame -> a batch of one."""
        return self.to_tensor(self.fit(frame)[0][None])

    def batch(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        return self.to_tensor(np.stack([self.fit(frame)[0] for frame in frames]))


def preprocess(frame: np.ndarray, spec: InputSpec) -> np.ndarray:
    """One BGR uint8 frame to the model's input tensor (batch of one)."""
    return Preprocessor(spec)(frame)


def read_frame(path: object) -> np.ndarray:
    """An image file decoded as a BGR frame, as a camera would give it (None-safe, non-ASCII paths too)."""
    data = np.fromfile(str(path), dtype=np.uint8)
    frame = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if frame is None:
        raise DatasetError(f"cannot decode image {path}", "delete or replace the corrupt file")
    return np.asarray(frame)
