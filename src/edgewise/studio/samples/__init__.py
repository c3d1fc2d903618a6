"""Bundled sample datasets, written as image folders (`split/class/*.png`).

Each sample is a plug-in in `SAMPLES`; `write_sample` is the one entry point the CLI and the
demo use. Writers are deterministic by seed, so a dataset digest is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgewise.core.errors import ConfigError
from edgewise.core.plugins import Registry
from edgewise.studio.samples import digits, parts, shapes
from edgewise.studio.samples._split import ProgressHook

SampleWriter = Callable[..., Path]

SAMPLES: Registry[SampleWriter] = Registry("sample dataset")
SAMPLES.add("digits", digits.write_digits, "scikit-learn's real handwritten digits (10 classes), upscaled")
SAMPLES.add("parts", parts.write_parts, "synthetic metal parts on a conveyor: ok / scratch / hole / crack")
SAMPLES.add("shapes", shapes.write_shapes, "generic marks on textured surfaces (8 classes), to pretrain backbones on")

SPLITS = ("train", "val", "test")


def write_sample(
    name: str, out_dir: Path, *, size: int | None = None, seed: int = 0, image_size: int = 32,
    on_image: ProgressHook | None = None,
) -> Path:
    """Write sample dataset `name` under `out_dir` (train/val/test, one folder per class, PNGs).

    `on_image(done, total)` is called after every image, for a progress bar."""
    writer = SAMPLES.get(name)
    if size is not None and size < 12:
        raise ConfigError(f"--size {size} is too small", "use --size 12 or more so every split gets each class")
    if not 8 <= image_size <= 512:
        raise ConfigError(f"--image-size {image_size} is out of range", "use an image size between 8 and 512")
    out_dir = Path(out_dir)
    existing = [split for split in SPLITS if (out_dir / split).exists()]
    if existing:
        # Writing over an older sample would mix two datasets (and their digests) silently.
        raise ConfigError(f"{out_dir} already holds a dataset ({', '.join(split + '/' for split in existing)})",
                          "choose a new folder, or delete the old one first")
    return writer(out_dir, size=size, seed=seed, image_size=image_size, on_image=on_image)


__all__ = ["SAMPLES", "SPLITS", "write_sample"]
