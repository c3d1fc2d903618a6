"""One shared suite (SourceTestCase) run against every built-in source, plus per-source cases."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgewise.agent.config import SourceSettings
from edgewise.agent.sources import SOURCES, create_source
from edgewise.core.errors import ConfigError, ServiceUnavailable


def write_video(path: Path, frames: int = 6) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), i * 30, dtype=np.uint8))
    writer.release()
    return path


def write_folder(path: Path, images: int = 5) -> Path:
    path.mkdir()
    for i in range(images):
        cv2.imwrite(str(path / f"{i:03d}.png"), np.full((48, 64, 3), i * 40, dtype=np.uint8))
    (path / "notes.txt").write_text("not an image")
    return path


class SourceTestCase:
    """What every source must do; subclasses say how to make one over `finite_frames` frames."""

    finite_frames = 5

    def settings(self, tmp_path: Path, **overrides) -> SourceSettings:
        raise NotImplementedError

    def test_frames_are_bgr_uint8(self, tmp_path) -> None:
        frames = list(create_source(self.settings(tmp_path, frames=3)).frames())
        assert len(frames) == 3
        for frame in frames:
            assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3

    def test_frames_cap_and_looping(self, tmp_path) -> None:
        count = self.finite_frames * 2 + 1
        looped = list(create_source(self.settings(tmp_path, frames=count, loop=True)).frames())
        assert len(looped) == count

    def test_fps_paces_the_frames(self, tmp_path) -> None:
        started = time.monotonic()
        list(create_source(self.settings(tmp_path, frames=4, fps=20.0)).frames())
        assert time.monotonic() - started >= 0.12

    def test_registered(self) -> None:
        assert self.kind in SOURCES


class TestSynthetic(SourceTestCase):
    kind = "synthetic"

    def settings(self, tmp_path, **overrides):
        return SourceSettings(kind="synthetic", width=96, height=64, **overrides)

    def test_deterministic_for_a_seed_and_shows_defects(self, tmp_path) -> None:
        first = list(create_source(self.settings(tmp_path, frames=10, seed=3)).frames())
        again = list(create_source(self.settings(tmp_path, frames=10, seed=3)).frames())
        assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
        assert not np.array_equal(first[0], first[5])  # the belt moves


class TestVideoFile(SourceTestCase):
    kind = "video-file"
    finite_frames = 6

    def settings(self, tmp_path, **overrides):
        path = tmp_path / "clip.avi"
        if not path.exists():
            write_video(path, self.finite_frames)
        return SourceSettings(kind="video-file", path=str(path), **overrides)

    def test_without_loop_it_ends(self, tmp_path) -> None:
        assert len(list(create_source(self.settings(tmp_path, loop=False)).frames())) == self.finite_frames

    def test_missing_file_is_reported(self, tmp_path) -> None:
        with pytest.raises(ServiceUnavailable, match="cannot open"):
            list(create_source(SourceSettings(kind="video-file", path=str(tmp_path / "none.avi"))).frames())


class TestImageFolder(SourceTestCase):
    kind = "image-folder"

    def settings(self, tmp_path, **overrides):
        path = tmp_path / "images"
        if not path.exists():
            write_folder(path, self.finite_frames)
        return SourceSettings(kind="image-folder", path=str(path), **overrides)

    def test_sorted_and_finite_without_loop(self, tmp_path) -> None:
        frames = list(create_source(self.settings(tmp_path, loop=False)).frames())
        assert [int(f[0, 0, 0]) for f in frames] == [0, 40, 80, 120, 160]

    def test_empty_folder_is_a_config_error(self, tmp_path) -> None:
        (tmp_path / "empty").mkdir()
        with pytest.raises(ConfigError, match="no images"):
            list(create_source(SourceSettings(kind="image-folder", path=str(tmp_path / "empty"))).frames())


class TestStream(SourceTestCase):
    """OpenCV reads a stream URL through FFmpeg; a local MJPG file URL stands in for a camera."""

    kind = "stream"
    finite_frames = 6

    def settings(self, tmp_path, **overrides):
        path = tmp_path / "stream.avi"
        if not path.exists():
            write_video(path, self.finite_frames)
        return SourceSettings(kind="stream", path=f"file://{path}", **overrides)

    def test_frames_cap_and_looping(self, tmp_path, monkeypatch) -> None:
        from edgewise.agent.sources.opencv import StreamSource

        monkeypatch.setattr(StreamSource, "reconnect_delay_s", 0.01)  # a dropped stream is reopened
        super().test_frames_cap_and_looping(tmp_path)

    def test_non_url_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match="stream URL"):
            list(create_source(SourceSettings(kind="stream", path="/dev/null")).frames())


def test_unknown_source_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="synthetic"):
        create_source(SourceSettings(kind="nope"))


def test_camera_is_registered_and_fails_cleanly_without_a_device() -> None:
    with pytest.raises(ServiceUnavailable):
        list(create_source(SourceSettings(kind="camera", path="/dev/video-none")).frames())
