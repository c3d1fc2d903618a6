"""`digits`: scikit-learn's bundled handwritten digits (1,797 real 8x8 scans), upscaled to RGB.

The data ships inside scikit-learn, so nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edgewise.core.errors import ConfigError
from edgewise.studio.samples._split import ProgressHook, split_indices, write_png

CLASSES = [str(digit) for digit in range(10)]


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - studio extra installs it
        raise ConfigError("scikit-learn is not installed", "pip install 'edgewise[studio]'") from error
    bunch = load_digits()
    return np.asarray(bunch.images), np.asarray(bunch.target)


def _to_rgb(image_8x8: np.ndarray, image_size: int) -> np.ndarray:
    # Scans hold ink density 0..16; white paper with dark ink matches what a camera would see.
    gray = (255 - image_8x8 / 16.0 * 255).clip(0, 255).astype(np.uint8)
    big = Image.fromarray(gray, mode="L").resize((image_size, image_size), Image.Resampling.BICUBIC)
    return np.asarray(big.convert("RGB"))


def write_digits(out_dir: Path, *, size: int | None, seed: int, image_size: int,
                 on_image: ProgressHook | None = None) -> Path:
    images, labels = _load_digits()
    rng = np.random.default_rng(seed)
    if size is not None and size < len(labels):
        if size < 3 * len(CLASSES):
            raise ConfigError(f"--size {size} is too small for 10 digit classes", "use --size 30 or more")
        # Equal share per class, so every split still holds every digit.
        chosen = np.concatenate([
            rng.permutation(np.flatnonzero(labels == digit))[: size // len(CLASSES) + (digit < size % len(CLASSES))]
            for digit in range(len(CLASSES))
        ])
        chosen.sort()
        images, labels = images[chosen], labels[chosen]
    done = 0
    for split, indices in split_indices(labels, rng).items():
        for index in indices:
            label = CLASSES[int(labels[index])]
            write_png(_to_rgb(images[index], image_size), out_dir / split / label / f"{index:05d}.png")
            done += 1
            if on_image is not None:
                on_image(done, len(labels))
    return out_dir
