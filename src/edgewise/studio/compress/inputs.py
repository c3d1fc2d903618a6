"""Loading what a compression run starts from: the model (checkpoint or ONNX) and the data."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from edgewise.core.errors import ConfigError, DatasetError, ModelError
from edgewise.core.model_card import ModelCard
from edgewise.studio.compress.measure import input_shape, output_shape
from edgewise.studio.compress.state import DataBundle


@dataclass
class InputModel:
    """A trained model: the torch module when there is one, else only its ONNX file and its card."""

    path: Path
    model: torch.nn.Module | None
    arch: str
    classes: list[str]
    image_size: int
    onnx_path: Path | None = None
    card: ModelCard | None = None

    @property
    def input_shape(self) -> list[int]:
        """Batch-1 input shape with every dimension fixed."""
        from edgewise.studio.cards import fixed_input_shape

        return fixed_input_shape(self.card) if self.card else [1, 3, self.image_size, self.image_size]


def load_input_model(path: Path, card_path: Path | None = None) -> InputModel:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist", "give a checkpoint (.pt) or an ONNX file")
    if path.suffix == ".onnx":
        from edgewise.studio.cards import resolve_card

        card = resolve_card(path, card_path)
        height, width = card.input.resize
        return InputModel(path, None, "onnx", list(card.labels), height if height == width else 0, onnx_path=path,
                          card=card)
    if card_path is not None:
        raise ConfigError("--card is for ONNX models; a checkpoint records its own input",
                          "drop --card, or compress the ONNX file")
    from edgewise.studio.checkpoints import load_checkpoint

    try:
        with warnings.catch_warnings():  # its TorchScript fallback warns about torch.jit on our pickles
            warnings.simplefilter("ignore", DeprecationWarning)
            loaded = load_checkpoint(path)  # safe loader (weights_only) first
    except ModelError:
        payload = _try_step_checkpoint(path)
        if payload is None:
            raise
        return payload
    if loaded.image_size is None:
        raise ModelError(f"{path} does not record its input size", "use an edgewise checkpoint from `edgewise train`")
    return InputModel(path, loaded.model.eval(), loaded.arch, list(loaded.classes), int(loaded.image_size))


def _try_step_checkpoint(path: Path) -> InputModel | None:
    """A compression step's own `model.pt` (a whole pickled module, since pruning changes shapes).

    Unpickling runs code: only the safe loader above is tried on arbitrary files first, and this
    path is meant for step checkpoints that this user's own runs wrote."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # not ours: let the studio checkpoint loader report what it is
        return None
    if isinstance(payload, dict) and payload.get("format") == "edgewise-compressed-module":
        return InputModel(path, payload["model"].eval(), payload["arch"], list(payload["classes"]),
                          int(payload["image_size"]))
    return None


def save_step_checkpoint(path: Path, model: torch.nn.Module, arch: str, classes: list[str], image_size: int) -> Path:
    """Keep a step's torch model. Pruned/decomposed models no longer match their zoo architecture,
    so the whole module is pickled (load it with `torch.load(..., weights_only=False)`)."""
    torch.save({"format": "edgewise-compressed-module", "model": model, "arch": arch, "classes": classes,
                "image_size": image_size}, path)
    return path


def load_data(data_dir: Path, image_size: int, batch_size: int, card: ModelCard | None = None) -> DataBundle:
    """The splits as loaders: a checkpoint's through the studio's datasets, an ONNX model's through its card."""
    if card is not None:
        from edgewise.studio.card_data import Batches, load_card_split

        train = load_card_split(data_dir, "train", card)
        val, test = (load_card_split(data_dir, split, card, train.classes) for split in ("val", "test"))
        return DataBundle(train=Batches(train, batch_size, shuffle_seed=0), val=Batches(val, batch_size),
                          test=Batches(test, batch_size), classes=list(train.classes))
    from edgewise.studio.datasets import load_splits

    splits = load_splits(data_dir, image_size, batch_size, augment=False)
    return DataBundle(train=splits.train, val=splits.val, test=splits.test, classes=list(splits.classes))


def check_model_matches_data(source: InputModel, data: DataBundle, data_dir: object) -> None:
    """Refuse a dataset the model was not trained for: its accuracy there would be a meaningless number.

    A checkpoint records its class names in output order, so names and order must agree; an ONNX
    file records only how many outputs it has and how many channels it reads."""
    if source.classes:
        if source.classes != data.classes:
            missing = [name for name in source.classes if name not in data.classes]
            extra = [name for name in data.classes if name not in source.classes]
            what = (f"the model has {_names(missing)} that the data lacks" if missing else
                    f"the data has {_names(extra)} that the model lacks" if extra else
                    "the same classes in another order")
            raise DatasetError(
                f"{source.path.name} was trained on classes {_names(source.classes)} but {data_dir} has "
                f"{_names(data.classes)}: {what}",
                "compress with the dataset the model was trained on (same class folders)")
        return
    outputs = output_shape(source.path)
    if outputs and isinstance(outputs[-1], int) and outputs[-1] > 0 and outputs[-1] != len(data.classes):
        raise DatasetError(
            f"{source.path.name} has {outputs[-1]} outputs but {data_dir} has {len(data.classes)} classes",
            "compress with the dataset the model was trained on")
    if source.card is not None:
        return  # the card says how images become its input
    inputs = input_shape(source.path)
    channels = inputs[1] if len(inputs) == 4 else None
    if isinstance(channels, int) and channels != 3:
        raise DatasetError(f"{source.path.name} reads {channels}-channel images; edgewise datasets are RGB",
                           "export the model for 3-channel (RGB) NCHW input")


def _names(names: list[str], shown: int = 6) -> str:
    listed = ", ".join(names[:shown]) + (f", ... ({len(names)} in all)" if len(names) > shown else "")
    return f"[{listed}]"
