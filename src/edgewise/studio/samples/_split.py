"""Shared helpers for sample writers: a stratified train/val/test split and PNG writing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

SPLIT_FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}

ProgressHook = Callable[[int, int], None]
"""Called after each image is written with (images written, images in all)."""


def split_indices(labels: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Stratified split: every class keeps the same train/val/test proportions."""
    parts: dict[str, list[int]] = {name: [] for name in SPLIT_FRACTIONS}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = max(1, round(len(members) * SPLIT_FRACTIONS["val"]))
        n_test = max(1, round(len(members) * SPLIT_FRACTIONS["test"]))
        parts["val"].extend(members[:n_val])
        parts["test"].extend(members[n_val : n_val + n_test])
        parts["train"].extend(members[n_val + n_test :])
    return {name: np.sort(np.asarray(idx, dtype=np.int64)) for name, idx in parts.items()}


def write_rendered(out_dir: Path, classes: list[str], total: int, seed: int, image_size: int,
                   render: Callable[[str, np.random.Generator, int], np.ndarray],
                   on_image: ProgressHook | None = None) -> Path:
    """`total` images, classes in turn, split stratified by `seed`; each drawn by `render` from its own
    generator, so a frame does not depend on which others were drawn."""
    labels = np.arange(total) % len(classes)
    done = 0
    for split, indices in split_indices(labels, np.random.default_rng(seed)).items():
        for index in indices:
            label = classes[int(labels[index])]
            image = render(label, np.random.default_rng([seed, int(index)]), image_size)
            write_png(image, out_dir / split / label / f"{index:05d}.png")
            done += 1
            if on_image is not None:
                on_image(done, total)
    return out_dir


def write_png(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image, mode="RGB").save(path, format="PNG", optimize=False)
