"""Sources read through OpenCV: a video file (looping), a camera device, an RTSP/HTTP stream."""

from __future__ import annotations

import time
from collections.abc import Iterator

import cv2
import numpy as np

from edgewise.agent.sources.base import Source
from edgewise.core.errors import ConfigError, ServiceUnavailable


class _CaptureSource(Source):
    reconnect_delay_s = 1.0

    def _open(self) -> cv2.VideoCapture:
        raise NotImplementedError

    def _capture(self) -> cv2.VideoCapture:
        capture = self._open()
        if not capture.isOpened():
            raise ServiceUnavailable(f"cannot open {self.kind_name} {self.settings.path!r}")
        return capture

    @property
    def kind_name(self) -> str:
        return self.settings.kind


class VideoFileSource(_CaptureSource):
    """A video file, looping back to the start when `loop` is true."""

    live = False

    def _open(self) -> cv2.VideoCapture:
        if not self.settings.path:
            raise ConfigError("source.path is required for a video-file source")
        return cv2.VideoCapture(self.settings.path)

    def _raw_frames(self) -> Iterator[np.ndarray]:
        capture = self._capture()
        try:
            produced = 0
            while True:
                ok, frame = capture.read()
                if ok:
                    produced += 1
                    yield frame
                    continue
                if not self.settings.loop or produced == 0:
                    return
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                produced = 0
        finally:
            capture.release()


class CameraSource(_CaptureSource):
    """A local camera device (path is the index, e.g. "0", or /dev/videoN)."""

    def _open(self) -> cv2.VideoCapture:
        path = self.settings.path or "0"
        capture = cv2.VideoCapture(int(path) if path.isdigit() else path)
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.settings.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.settings.height)
        return capture

    def _raw_frames(self) -> Iterator[np.ndarray]:
        capture = self._capture()
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                yield frame
        finally:
            capture.release()


class StreamSource(_CaptureSource):
    """An RTSP or HTTP(S) video stream; reconnects when the stream drops."""

    def _open(self) -> cv2.VideoCapture:
        if not self.settings.path or "://" not in self.settings.path:
            raise ConfigError("source.path must be a stream URL (rtsp://, http://...)")
        return cv2.VideoCapture(self.settings.path)

    def _raw_frames(self) -> Iterator[np.ndarray]:
        while True:
            capture = self._capture()
            try:
                while True:
                    ok, frame = capture.read()
                    if not ok:
                        break
                    yield frame
            finally:
                capture.release()
            if not self.settings.loop:
                return
            time.sleep(self.reconnect_delay_s)
