"""An image folder seen through a model card: every image decoded as a device would decode a
frame (BGR, OpenCV) and turned into the model's input by `edgewise.core.preprocess`.

This is how the studio feeds models it did not train (an ONNX file and its card): evaluation,
calibration and the accuracy of every compression step use exactly the agent's tensors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgewise.core.errors import DatasetError
from edgewise.core.model_card import ModelCard
from edgewise.core.preprocess import Preprocessor, read_frame
from edgewise.studio.datasets import IMAGE_SUFFIXES, list_classes


@dataclass
class CardSplit:
    """One split as the model's input tensors (N, ...) and integer labels."""

    tensors: np.ndarray
    labels: np.ndarray
    classes: list[str]
    files: list[Path]

    def __len__(self) -> int:
        return len(self.labels)


class Batches:
    """(tensors, labels) batches over a split; iterable again and again, like a DataLoader.

    With `shuffle_seed` the images come in one fixed random order: files are sorted by class, so
    the first N of a train split (what calibration takes) would otherwise hold one class only."""

    def __init__(self, split: CardSplit, batch_size: int, shuffle_seed: int | None = None) -> None:
        self.split, self.batch_size = split, batch_size
        count = len(split)
        self.order = (np.random.default_rng(shuffle_seed).permutation(count) if shuffle_seed is not None
                      else np.arange(count))

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(self.split), self.batch_size):
            chosen = self.order[start : start + self.batch_size]
            yield self.split.tensors[chosen], self.split.labels[chosen]

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)


def load_card_split(root: Path, split: str, card: ModelCard, classes: list[str] | None = None) -> CardSplit:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist",
                           f"check the path, or write a sample: `edgewise data sample parts {root}`")
    split_dir = root / split
    found = list_classes(split_dir)
    if classes is not None and found != classes:
        raise DatasetError(f"{split_dir} has classes {found}, but the train split has {classes}",
                           "give every split the same class folders")
    files: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(found):
        members = sorted(p for p in (split_dir / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not members:
            raise DatasetError(f"class folder {split_dir / name} has no images",
                               "add images (PNG/JPEG) to it or remove the empty folder")
        files.extend(members)
        labels.extend([index] * len(members))
    preprocess = Preprocessor(card.input)
    tensors = np.concatenate([preprocess(read_frame(path)) for path in files])
    return CardSplit(tensors, np.asarray(labels, dtype=np.int64), found, files)


def check_card_matches(card: ModelCard, classes: list[str], where: object) -> None:
    """A card that names its classes must name the data's, in the same order."""
    if card.labels and list(card.labels) != list(classes):
        raise DatasetError(f"the model card names classes {list(card.labels)} but {where} has {list(classes)}",
                           "use the dataset the model was trained on, or fix the card's labels (output order)")
