"""An image folder: every image file, sorted by name, optionally looping."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edgewise.agent.sources.base import Source
from edgewise.core.errors import ConfigError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


class ImageFolderSource(Source):
    """Images in a folder (recursively), sorted by path."""

    live = False

    def _raw_frames(self) -> Iterator[np.ndarray]:
        if not self.settings.path or not Path(self.settings.path).is_dir():
            raise ConfigError(f"source.path {self.settings.path!r} is not a folder", "point at a folder of images")
        files = sorted(p for p in Path(self.settings.path).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ConfigError(f"no images in {self.settings.path}", f"add files with one of {sorted(IMAGE_SUFFIXES)}")
        while True:
            for file in files:
                frame = cv2.imread(str(file), cv2.IMREAD_COLOR)
                if frame is not None:  # unreadable files are skipped, not fatal
                    yield frame
            if not self.settings.loop:
                return
