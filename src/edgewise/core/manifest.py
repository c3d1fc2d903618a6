"""The bundle manifest (`bundle.json`): everything a device needs to run a model, and its hashes.

The manifest is validated strictly (unknown keys are rejected). Its canonical JSON form
(`canonical_json(manifest.model_dump(mode="json"))`) is what the detached signature covers, and
`sha256:` + sha256 of that form is the bundle's digest, its identity in every store and on the wire:
the manifest lists the sha256 of every file, so the digest pins the whole content.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from edgewise.core.hashing import canonical_json, sha256_bytes
from edgewise.core.strict_json import text_problem

MANIFEST_NAME = "bundle.json"
SIGNATURE_NAME = "bundle.sig"
SCHEMA_VERSION = 1

Task = Literal["classify", "detect", "segment"]
# rows: N x (4 + 1 + 1) [box, score, class] or N x (4 + C); yolov8: 1 x (4 + C) x N, no objectness;
# yolov5: 1 x N x (5 + C) with objectness; nms-rows: 1 x K x 6 already suppressed; ssd: boxes
# 1 x K x 4 (ymin, xmin, ymax, xmax, normalised), classes 1 x K, scores 1 x K, count 1.
DetectionLayout = Literal["rows", "yolov8", "yolov5", "nms-rows", "ssd"]
Precision = Literal["fp32", "fp16", "int8", "int8-full", "int4-weight", "mixed"]


def _text(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:  # it could be written, but not read back by the strict loader
        raise ValueError(problem)
    return value


Label = Annotated[str, Field(max_length=256), AfterValidator(_text)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, allow_inf_nan=False)


class InputSpec(Strict):
    """How a frame becomes the model's input tensor."""

    shape: list[int] = Field(description="model input shape, batch first; -1 for a dynamic batch")
    dtype: Literal["float32", "float16", "uint8", "int8"] = "float32"
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    color_order: Literal["RGB", "BGR", "GRAY"] = "RGB"
    resize: list[int] = Field(description="[height, width] the frame is resized to")
    scale: float = Field(1.0 / 255.0, description="multiplied into pixel values before mean/std")
    mean: list[float] = Field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: list[float] = Field(default_factory=lambda: [1.0, 1.0, 1.0])
    # Added after schema 1. Left out of the canonical form while unset, so bundles signed before
    # they existed keep their digest and signature.
    resize_mode: Literal["stretch", "letterbox", "center-crop"] | None = Field(
        default=None, description="how a frame of another aspect ratio is fitted (unset: stretch)")
    pad_value: int | None = Field(default=None, ge=0, le=255, description="letterbox padding, 0-255 on every channel")
    crop_fraction: float | None = Field(default=None, gt=0.0, le=1.0,
                                        description="center-crop: the crop's share of the side (timm's crop_pct)")

    @field_validator("resize")
    @classmethod
    def _two_sides(cls, value: list[int]) -> list[int]:
        if len(value) != 2 or min(value) <= 0:
            raise ValueError("resize must be [height, width] with positive sides")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> InputSpec:
        if self.resize_mode == "letterbox" and self.pad_value is None:
            raise ValueError("letterbox needs pad_value (the padding's pixel value, e.g. 114 or 0)")
        channels = 1 if self.color_order == "GRAY" else 3
        if len(self.mean) < channels or len(self.std) < channels:
            raise ValueError(f"mean and std need {channels} values (one per channel)")
        if any(value == 0 for value in self.std[:channels]):
            raise ValueError("std must not be 0")
        if len(self.shape) == 4:
            height, width = (self.shape[2], self.shape[3]) if self.layout == "NCHW" else (self.shape[1], self.shape[2])
            for side, fixed, name in ((self.resize[0], height, "height"), (self.resize[1], width, "width")):
                if fixed > 0 and side != fixed:
                    raise ValueError(f"resize {self.resize} does not match the model's fixed {name} {fixed}")
        return self

    @model_serializer(mode="wrap")
    def _without_unset_additions(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        data: dict[str, object] = handler(self)
        for key in _ADDED_INPUT_FIELDS:
            if data.get(key) is None:
                data.pop(key, None)
        return data


_ADDED_INPUT_FIELDS = ("resize_mode", "pad_value", "crop_fraction")


class OutputSpec(Strict):
    """How the model's output becomes results."""

    # "logits": softmax is applied here; "probabilities": the graph ends in its own softmax, taken
    # as it is. "logits-softmax" and "softmax" are their schema-1 names, still read.
    decode: Literal["logits", "probabilities", "softmax", "logits-softmax", "sigmoid", "detection"] = \
        "logits-softmax"
    score_threshold: float = 0.0
    nms_iou: float = 0.5
    box_format: Literal["xyxy", "cxcywh"] = "xyxy"
    # Added after schema 1, left out of the canonical form while unset (see InputSpec).
    detection_layout: DetectionLayout | None = Field(
        default=None, description="how a detector's outputs are laid out (unset: rows); see core/detection_layouts.py")
    class_thresholds: dict[Label, float] | None = Field(
        default=None, max_length=1024, description="per-class score thresholds over score_threshold")
    max_detections: int | None = Field(default=None, ge=1, le=10000,
                                       description="the best N boxes per frame are kept (unset: all)")

    @model_serializer(mode="wrap")
    def _without_unset_additions(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        data: dict[str, object] = handler(self)
        for key in ("detection_layout", "class_thresholds", "max_detections"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class Variant(Strict):
    """One model file built for a family of targets (e.g. int8 QDQ for CPUs, fp16 for Jetson)."""

    name: str
    file: str
    precision: Precision = "fp32"
    runtime: str = "onnxruntime"
    target_families: list[str] = Field(default_factory=lambda: ["cpu"])
    size_bytes: int = 0


class Metrics(Strict):
    accuracy: float | None = None
    size_bytes: int | None = None
    host_latency_ms: float | None = None
    estimated_target_latency_ms: float | None = None
    extra: dict[str, float] = Field(default_factory=dict)


class Lineage(Strict):
    parent: str | None = None
    recipe: list[str] = Field(default_factory=list)
    dataset_digest: str | None = None
    created_by: str = ""
    created_at: str = ""


class Manifest(Strict):
    schema_version: int = SCHEMA_VERSION
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
    task: Task = "classify"
    labels: list[Label]
    input: InputSpec
    output: OutputSpec = Field(default_factory=lambda: OutputSpec())
    target: str = "x86-host"
    precision: Precision = "fp32"
    variants: list[Variant]
    metrics: Metrics = Field(default_factory=Metrics)
    lineage: Lineage = Field(default_factory=Lineage)
    files: dict[str, str] = Field(default_factory=dict, description="relative path -> sha256 of every file")

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.model_dump(mode="json"))

    @property
    def digest(self) -> str:
        return "sha256:" + sha256_bytes(self.canonical_bytes())

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def variant_for(self, families: list[str]) -> Variant:
        """The first variant built for one of `families` (a device's, most specific first)."""
        for family in families:
            for variant in self.variants:
                if family in variant.target_families:
                    return variant
        from edgewise.core.errors import TargetIncompatible

        built = sorted({f for v in self.variants for f in v.target_families})
        raise TargetIncompatible(
            f"bundle {self.ref} has no variant for {families} (it has {built})",
            "add a variant for this hardware to the bundle, or deploy to matching devices",
        )
