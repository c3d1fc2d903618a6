"""The model card: what a model reads and what it gives, in one small file beside the model.

A card fixes everything about the input that cannot be read reliably from the model file
(colour order, how a frame is fitted to the input size, scale/mean/std) and how the output is
read (logits, probabilities, sigmoid, detections). `evaluate`, `bench`, `compress`, `bundle
create` and the agent all work from it; a bundle's manifest carries it (its `task`, `labels`,
`input` and `output`). Nothing on a card is guessed: `edgewise inspect model.onnx` proposes one
and leaves what the file does not say as `null`, and a card with a `null` left is refused with
the field's name until someone who knows the model fills it in.

    task: classify
    labels: [ok, scratch, dent]
    input: {shape: [-1, 3, 48, 192], layout: NCHW, dtype: float32, color_order: BGR,
            resize: [48, 192], resize_mode: letterbox, pad_value: 0,
            scale: 0.00392156862745098, mean: [0.406, 0.456, 0.485], std: [0.225, 0.224, 0.229]}
    output: {decode: probabilities}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from edgewise.core.errors import ConfigError
from edgewise.core.manifest import InputSpec, Label, Manifest, OutputSpec, Strict, Task
from edgewise.core.strict_json import StrictJSONError, loads
from edgewise.core.validation import describe_validation

CARD_SUFFIX = ".card.yaml"
MAX_CARD_BYTES = 1 << 20
# What a card must say outright: a default here would be a silent guess about someone's model.
REQUIRED = {
    "input": ("shape", "layout", "dtype", "color_order", "resize", "resize_mode", "scale", "mean", "std"),
    "output": ("decode",),
}
HINTS = {
    "color_order": "RGB or BGR: the order the model was trained on (OpenCV pipelines are BGR, PIL/torchvision RGB)",
    "resize": "[height, width] of the model's input",
    "resize_mode": "stretch, letterbox (with pad_value) or center-crop (with crop_fraction)",
    "scale": "what pixels are multiplied by first, e.g. 0.00392156862745098 (1/255) or 1.0",
    "mean": "three numbers subtracted after scaling, e.g. [0.485, 0.456, 0.406] (ImageNet, RGB order)",
    "std": "three numbers divided by last, e.g. [0.229, 0.224, 0.225]",
    "layout": "NCHW or NHWC",
    "dtype": "float32, float16, uint8 or int8",
    "shape": "the input shape, batch first, -1 for a dynamic dimension",
    "decode": "logits (softmax applied by edgewise), probabilities (the model has its softmax), sigmoid or detection",
}


class ModelCard(Strict):
    card_version: Literal[1] = 1
    task: Task = "classify"
    labels: list[Label] = Field(default_factory=list, description="class names in output order; empty: from the data")
    input: InputSpec
    output: OutputSpec

    @classmethod
    def of_manifest(cls, manifest: Manifest) -> ModelCard:
        return cls(task=manifest.task, labels=list(manifest.labels), input=manifest.input, output=manifest.output)

    def with_labels(self, labels: list[str]) -> ModelCard:
        return self.model_copy(update={"labels": list(labels)})

    def to_yaml(self) -> str:
        return dump_card(self.model_dump(mode="json"))


def card_beside(model_path: Path) -> Path:
    """`model.onnx` -> `model.card.yaml` in the same folder."""
    return Path(model_path).with_name(Path(model_path).stem + CARD_SUFFIX)


def dump_card(data: dict[str, Any]) -> str:
    import yaml

    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100))


def load_card(path: Path) -> ModelCard:
    """Read a card (YAML or JSON); anything missing, `null` or malformed is one line naming the field."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model card {path} not found",
                          "write one: `edgewise inspect MODEL.onnx --out CARD.yaml`, then fill in its nulls")
    raw = path.read_bytes()
    if len(raw) > MAX_CARD_BYTES:
        raise ConfigError(f"model card {path} is larger than 1 MiB", "a card is a few lines of YAML")
    data = _parse(raw, path)
    return card_from_dict(data, str(path))


def _parse(raw: bytes, path: Path) -> object:
    if path.suffix.lower() == ".json":
        try:
            return loads(raw)
        except StrictJSONError as error:
            raise ConfigError(f"model card {path} is not valid JSON: {error}", "fix the file") from None
    import yaml

    try:
        return yaml.safe_load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        first = str(error).splitlines()[0] if str(error) else error.__class__.__name__
        raise ConfigError(f"model card {path} is not valid YAML: {first}", "fix the file") from None


def card_from_dict(data: object, where: str = "the model card") -> ModelCard:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} is not a mapping of fields", "start from `edgewise inspect MODEL.onnx --out CARD`")
    for section, fields in REQUIRED.items():
        part = data.get(section)
        if not isinstance(part, dict):
            raise ConfigError(f"{where} has no `{section}:` section",
                              "start from `edgewise inspect MODEL.onnx --out CARD`")
        for name in fields:
            if part.get(name) is None:
                raise ConfigError(f"{where} leaves {section}.{name} undecided", f"write {HINTS[name]}")
    try:
        return ModelCard.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{where}: {describe_validation(error, first_only=True)}", "fix that field") from None
