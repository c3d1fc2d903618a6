"""Bundled sample datasets, written as image folders (`split/class/*.png`).

Each sample is a plug-in in `SAMPLES`; `write_sample` is the one entry point the CLI and the
demo use. Writers are deterministic by seed, so a dataset digest is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgewise.core.errors import ConfigError
from edgewise.core.plugins import Registry
from edgewise.studio.samples import digits, parts, shapes, traffic, traffic_video
from edgewise.studio.samples._split import ProgressHook

SampleWriter = Callable[..., Path]

SAMPLES: Registry[SampleWriter] = Registry("sample dataset")
SAMPLES.add("digits", digits.write_digits, "scikit-learn's real handwritten digits (10 classes), upscaled")
SAMPLES.add("parts", parts.write_parts, "synthetic metal parts on a conveyor: ok / scratch / hole / crack")
SAMPLES.add("shapes", shapes.write_shapes, "generic marks on textured surfaces (8 classes), to pretrain backbones on")
SAMPLES.add("traffic", traffic.write_traffic,
            "detection: vehicles on a 5-lane road seen from a pole (4 classes, up to ~20 per frame), in clips")
SAMPLES.add("traffic-video", traffic_video.write_traffic_video_sample,
            "detection: one continuous traffic clip (traffic.mp4, 10 fps) with exact line and zone counts")
DETECTION_SAMPLES = {"traffic", "traffic-video"}
VIDEO_SAMPLES = {"traffic-video"}  # a video and ground_truth.json, not split folders of PNGs

SPLITS = ("train", "val", "test")


def write_sample(
    name: str, out_dir: Path, *, size: int | None = None, seed: int = 0, image_size: int | None = None,
    on_image: ProgressHook | None = None,
) -> Path:
    """Write sample dataset `name` under `out_dir`: train/val/test, one folder per class (PNGs), or for
    a detection sample images/ and COCO annotations.json per split; for a video sample, the video and
    its ground truth (`size` is then its number of frames).

    `on_image(done, total)` is called after every image, for a progress bar."""
    writer = SAMPLES.get(name)
    if size is not None and size < 12:
        raise ConfigError(f"--size {size} is too small", "use --size 12 or more so every split gets each class")
    if name not in DETECTION_SAMPLES:
        image_size = 32 if image_size is None else image_size
    if image_size is not None and not 8 <= image_size <= 512:
        raise ConfigError(f"--image-size {image_size} is out of range", "use an image size between 8 and 512")
    out_dir = Path(out_dir)
    existing = [split for split in SPLITS if (out_dir / split).exists()]
    if existing:
        # Writing over an older sample would mix two datasets (and their digests) silently.
        raise ConfigError(f"{out_dir} already holds a dataset ({', '.join(split + '/' for split in existing)})",
                          "choose a new folder, or delete the old one first")
    return writer(out_dir, size=size, seed=seed, image_size=image_size, on_image=on_image)


__all__ = ["DETECTION_SAMPLES", "SAMPLES", "SPLITS", "VIDEO_SAMPLES", "write_sample"]
