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


def write_png(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image, mode="RGB").save(path, format="PNG", optimize=False)
