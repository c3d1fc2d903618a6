"""The Source ABC: something that yields BGR uint8 frames, finite or endless."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator

import numpy as np

from edgewise.agent.config import SourceSettings


class Source(ABC):
    """A video source. `frames()` yields HxWx3 uint8 BGR arrays; it ends only for finite sources.

    `live` sources (cameras, streams, the synthetic camera) go on whether or not the model keeps
    up, so a slow model takes the newest frame; stored ones (files, folders) wait for the model,
    and never lose a frame."""

    live = True

    def __init__(self, settings: SourceSettings) -> None:
        self.settings = settings

    @abstractmethod
    def _raw_frames(self) -> Iterator[np.ndarray]:
        """The frames as the device gives them."""

    def frames(self) -> Iterator[np.ndarray]:
        """Frames paced to `settings.fps` (when set) and capped at `settings.frames`."""
        interval = 1.0 / self.settings.fps if self.settings.fps else 0.0
        next_at = time.monotonic()
        for count, frame in enumerate(self._raw_frames()):
            if self.settings.frames is not None and count >= self.settings.frames:
                return
            if interval:
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_at = max(next_at + interval, time.monotonic() - interval)
            yield frame

    def close(self) -> None:
        """Release the device (default: nothing to release)."""
        return None


