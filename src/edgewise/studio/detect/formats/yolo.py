"""YOLO txt labels with their `data.yaml`, in the layout Ultralytics reads and writes.

    data.yaml                 path, train/val/test (image folders or lists), names (list or {id: name})
    images/<split>/x.png      labels/<split>/x.txt: one `class cx cy w h` line per box, in [0, 1]

An image's label file is found the Ultralytics way: the last `/images/` of its path becomes
`/labels/` and the suffix `.txt`. A missing or empty label file is a background image. The
format has no place for video sequences or crowd regions: they are not written.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgewise.core.errors import DatasetError
from edgewise.studio.detect.annotations import AnnotatedImage, DetectionSet
from edgewise.studio.detect.formats._files import (
    SPLITS,
    UNKNOWN_CLASS,
    image_name,
    image_size,
    link_or_copy,
    list_images,
    number,
    require_writable,
    unify_labels,
)

DATA_YAML = "data.yaml"
DIGITS = 8  # significant digits of a normalised coordinate: well under 1e-3 px on any real image


def read_yolo(data_yaml: Path, *, strict: bool = True) -> dict[str, DetectionSet]:
    """Every split `data_yaml` names. Sizes come from the image files' headers.

    `strict=False` keeps boxes of class ids beyond `names` as class -1 and an unreadable image as
    0x0 without boxes, for `data check` to count, instead of raising.
    """
    data_yaml = Path(data_yaml).absolute()  # label paths are found through the `/images/` in image paths
    config = _load_yaml(data_yaml)
    labels = _names(config, data_yaml)
    root = _dataset_root(config, data_yaml)
    splits: dict[str, DetectionSet] = {}
    for split in SPLITS:
        if config.get(split):
            split_root, files = _split_images(config[split], root, data_yaml, split)
            images = [_read_image(path, split_root, len(labels), strict) for path in files]
            splits[split] = DetectionSet(root=split_root, labels=labels, images=images)
    if not splits:
        raise DatasetError(f"{data_yaml} names no train, val or test images", "add e.g. `train: images/train`")
    return splits


def write_yolo(splits: Mapping[str, DetectionSet], out: Path) -> Path:
    """Write `out/images/<split>/`, `out/labels/<split>/` and `out/data.yaml`; returns the yaml's path."""
    import yaml

    out = Path(out)
    labels, splits = unify_labels(splits)
    for split, dataset in splits.items():
        require_writable(dataset)
        for image in dataset.images:
            name = image_name(image.file)
            link_or_copy(dataset.path_of(image), out / "images" / split / name)
            label_file = (out / "labels" / split / name).with_suffix(".txt")
            label_file.parent.mkdir(parents=True, exist_ok=True)
            label_file.write_text(
                "".join(
                    _label_line(image, box, class_index) + "\n"
                    for box, class_index in zip(image.boxes, image.classes, strict=True)
                )
            )
    config: dict[str, Any] = {
        "path": str(out.resolve()),
        **{split: f"images/{split}" for split in splits},
        "names": dict(enumerate(labels)),
    }
    (out / DATA_YAML).write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return out / DATA_YAML


def label_path(image_path: Path) -> Path:
    """Where Ultralytics looks for an image's labels."""
    head, marker, tail = image_path.absolute().as_posix().rpartition("/images/")
    return Path(f"{head}/labels/{tail}" if marker else image_path.absolute().as_posix()).with_suffix(".txt")


def _label_line(image: AnnotatedImage, box: np.ndarray, class_index: int) -> str:
    x1, y1, x2, y2 = (float(value) for value in box)
    centre_x, centre_y = (x1 + x2) / 2 / image.width, (y1 + y2) / 2 / image.height
    width, height = (x2 - x1) / image.width, (y2 - y1) / image.height
    return f"{int(class_index)} " + " ".join(f"{value:.{DIGITS}g}" for value in (centre_x, centre_y, width, height))


def _read_image(path: Path, split_root: Path, class_count: int, strict: bool) -> AnnotatedImage:
    # A list file may name images anywhere: those outside the split's folder keep their absolute path.
    file = path.relative_to(split_root).as_posix() if path.is_relative_to(split_root) else path.as_posix()
    try:
        width, height = image_size(path)
    except DatasetError:
        if strict:
            raise
        return AnnotatedImage(file, 0, 0)
    boxes, classes = _read_labels(label_path(path), class_count, strict)
    scale = np.array([width, height, width, height], dtype=np.float64)
    centres, sizes = boxes[:, :2], boxes[:, 2:]
    corners = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1) * scale
    return AnnotatedImage(file, width, height, corners, classes)


def _read_labels(path: Path, class_count: int, strict: bool) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) normalised cx cy w h and (N,) classes; no file means no boxes."""
    if not path.is_file():
        return np.zeros((0, 4)), np.zeros(0, dtype=np.int64)
    rows: list[list[float]] = []
    classes: list[int] = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{line_number}"
        if len(fields) != 5:
            raise DatasetError(
                f"{where}: expected 5 fields `class cx cy w h`, found {len(fields)}",
                "fix or delete the line (polygon and keypoint labels are not detection labels)",
            )
        class_id = number(fields[0], where)
        if not class_id.is_integer() or class_id < 0:
            raise DatasetError(f"{where}: class {fields[0]!r} is not a class index", "use 0 .. len(names)-1")
        if class_id >= class_count and strict:
            raise DatasetError(
                f"{where}: class {int(class_id)} is not in data.yaml's names (0..{class_count - 1})",
                "add the class to `names` or fix the line",
            )
        classes.append(int(class_id) if class_id < class_count else UNKNOWN_CLASS)
        rows.append([number(value, where) for value in fields[1:]])
    return np.array(rows, dtype=np.float64).reshape(-1, 4), np.array(classes, dtype=np.int64)


def _load_yaml(data_yaml: Path) -> dict[str, Any]:
    import yaml

    if not data_yaml.is_file():
        raise DatasetError(f"{data_yaml} does not exist", "point at the dataset's data.yaml")
    try:
        config = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise DatasetError(
            f"{data_yaml}: {line}bad YAML ({getattr(error, 'problem', None) or error})", "fix the file"
        ) from None
    if not isinstance(config, dict):
        raise DatasetError(
            f"{data_yaml} is not a YOLO data.yaml: expected keys path, train, val, names",
            "see the Ultralytics dataset format",
        )
    return config


def _names(config: dict[str, Any], data_yaml: Path) -> list[str]:
    names = config.get("names")
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise DatasetError(
                f"{data_yaml}: names' ids must be 0 .. {len(names) - 1}, found {sorted(names)}",
                "number the classes from 0 without gaps",
            )
        names = [names[index] for index in range(len(names))]
    if not isinstance(names, list) or not names:
        raise DatasetError(
            f"{data_yaml}: `names` must be a list of class names or an {{id: name}} mapping",
            "add e.g. `names: [car, person]`",
        )
    if "nc" in config and config["nc"] != len(names):
        raise DatasetError(
            f"{data_yaml}: nc is {config['nc']} but names lists {len(names)} classes",
            "make nc match names, or delete nc",
        )
    return [str(name) for name in names]


def _dataset_root(config: dict[str, Any], data_yaml: Path) -> Path:
    """`path`, relative to the yaml's folder; the yaml's folder itself when unset or gone (a moved copy)."""
    if not config.get("path"):
        return data_yaml.parent
    root = data_yaml.parent / Path(str(config["path"])).expanduser()
    return root if root.is_dir() else data_yaml.parent


def _split_images(entry: Any, root: Path, data_yaml: Path, split: str) -> tuple[Path, list[Path]]:
    """(the folder image files are named from, the images): a folder, a .txt list, or a list of folders."""
    sources = entry if isinstance(entry, list) else [entry]
    files: list[Path] = []
    for source in map(str, sources):
        path = root / source
        if path.is_dir():
            files += list_images(path)
        elif path.suffix == ".txt" and path.is_file():
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            files += [(path.parent / line if line.startswith("./") else root / line) for line in lines]
        else:
            raise DatasetError(
                f"{data_yaml}: {split} images {path} do not exist", f"fix `{split}:` or create the folder"
            )
    single_folder = len(sources) == 1 and (root / str(sources[0])).is_dir()
    return (root / str(sources[0]) if single_folder else root), files
