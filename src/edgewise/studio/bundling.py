"""Build bundles from what the studio made: a step of a compress run, or any ONNX model.

From a step directory (`RUN/steps/NN-name/`) the manifest is filled from the run's report.json
(labels, input size, target, precision, measured metrics, the recipe up to that step, the input
model as parent) and from the step's checkpoint meta when present (dataset digest, mean/std).
Several steps (e.g. an fp16 step for Jetson and a full-int8 step for the Edge TPU) become
several variants of one bundle. Anything the run does not say can be given explicitly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgewise.core.bundle import create_bundle
from edgewise.core.errors import ConfigError, InvalidBundle
from edgewise.core.hashing import sha256_bytes, sha256_file
from edgewise.core.manifest import InputSpec, Lineage, Manifest, Metrics, OutputSpec, Task, Variant
from edgewise.core.model_card import ModelCard, card_from_dict
from edgewise.core.validation import describe_validation

# The preprocessing studio-trained models expect (see studio/datasets.py): RGB in [0,1], (x-0.5)/0.5.
STUDIO_MEAN = [0.5, 0.5, 0.5]
STUDIO_STD = [0.5, 0.5, 0.5]

_PRECISIONS = {"fp32": "fp32", "fp16": "fp16", "int8": "int8", "int8-full": "int8-full",
               "int8-mixed": "mixed", "int4": "int4-weight", "int4-weight": "int4-weight",
               "binary": "mixed", "ternary": "mixed", "mixed": "mixed"}


@dataclass
class VariantSource:
    """One model file to put in a bundle and what hardware it is for."""

    name: str
    path: Path
    precision: str = "fp32"
    target_families: list[str] = field(default_factory=lambda: ["cpu"])


@dataclass
class BundleOptions:
    """What the user says about the bundle; None means 'take it from the run or the model'."""

    name: str
    version: str
    task: Task = "classify"
    labels: list[str] | None = None
    image_size: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    target: str | None = None
    parent: str | None = None
    dataset_digest: str | None = None
    created_by: str = "edgewise"
    output: OutputSpec = field(default_factory=OutputSpec)
    card: ModelCard | None = None  # for an ONNX model: how frames become its input, how its output is read
    # Card fields given one by one (an ONNX file without a card); None: not given.
    card_fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepInfo:
    """What a compress run's report says about one of its steps."""

    variant: VariantSource
    labels: list[str]
    image_size: int
    target: str
    metrics: Metrics
    recipe: list[str]
    parent: str | None
    checkpoint_meta: dict[str, Any]
    dataset_digest: str | None = None
    card: ModelCard | None = None


def precision_for_manifest(precision: str) -> str:
    if precision not in _PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}", f"use one of {sorted(_PRECISIONS)}")
    return _PRECISIONS[precision]


def families_for(family: str, precision: str) -> list[str]:
    """A QDQ/fp ONNX model for a target family also runs on any CPU; a full-int8 Edge TPU model does not."""
    if precision == "int8-full" or family == "cpu":
        return [family]
    return [family, "cpu"]


def read_step(step_dir: Path) -> StepInfo:
    """Read a compress run's step from its report.json (RUN/report.json for RUN/steps/NN-name)."""
    step_dir = Path(step_dir).resolve()
    model_path = step_dir / "model.onnx"
    if not model_path.is_file():
        raise InvalidBundle(f"{step_dir} has no model.onnx", "point at a step folder like RUN/steps/02-quantize")
    report_path = step_dir.parent.parent / "report.json"
    if not report_path.is_file():
        raise InvalidBundle(f"no report.json for {step_dir} (looked at {report_path})",
                            "bundle a step of a finished `edgewise compress` run, or use --onnx")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    step = _find_step(report, step_dir)
    target = report.get("target", {})
    family = str(target.get("family", "cpu"))
    precision = precision_for_manifest(str(step.get("precision", "fp32")))
    step_metrics = step.get("metrics", {})
    extra = {key: float(step_metrics[key]) for key in ("params", "macs", "delta_accuracy", "host_speedup",
                                                        "host_latency_p95_ms", "est_energy_mj")
             if isinstance(step_metrics.get(key), (int, float))}
    metrics = Metrics(accuracy=_fraction(step_metrics.get("accuracy")), size_bytes=model_path.stat().st_size,
                      host_latency_ms=step_metrics.get("host_latency_ms"),
                      estimated_target_latency_ms=step_metrics.get("est_target_latency_ms"), extra=extra)
    recipe = [f"{s['name']}({_params(s.get('params', {}))})" for s in report.get("steps", [])
              if int(s.get("index", 0)) <= int(step.get("index", 0))]
    source = report.get("input", {})
    parent = f"{source['path']} (sha256:{source['sha256']})" if source.get("path") and source.get("sha256") else None
    return StepInfo(
        variant=VariantSource(name=f"{family}-{precision}", path=model_path, precision=precision,
                              target_families=families_for(family, precision)),
        labels=[str(c) for c in source.get("classes") or report.get("data", {}).get("classes") or []],
        image_size=int(source.get("image_size") or 0),
        target=str(target.get("name", "x86-host")),
        metrics=metrics,
        recipe=recipe,
        parent=parent,
        checkpoint_meta=_checkpoint_meta(step.get("checkpoint_path")),
        dataset_digest=_run_dataset_digest(report.get("data", {})),
        card=_run_card(source.get("card")),
    )


def _run_card(recorded: Any) -> ModelCard | None:
    """The card an ONNX input model was compressed with; the run fixed its height and width."""
    if not isinstance(recorded, dict):
        return None
    card = card_from_dict(recorded, "the compress run's model card")
    return card.model_copy(update={"input": card.input.model_copy(update={"shape": spatially_fixed(card)})})


def spatially_fixed(card: ModelCard) -> list[int]:
    """The card's input shape with height and width at its size (the batch left as it is)."""
    from edgewise.studio.cards import fixed_input_shape

    shape = fixed_input_shape(card)
    shape[0] = card.input.shape[0]
    return shape


def _run_dataset_digest(data: dict[str, Any]) -> str | None:
    """The run's dataset digest: recorded in the report if it is, else hashed from its folder if it still exists."""
    recorded = data.get("digest") or data.get("sha256")
    if recorded:
        return str(recorded)
    folder = Path(str(data.get("dir", "")))
    return dataset_digest(folder) if data.get("dir") and folder.is_dir() else None


def _find_step(report: dict[str, Any], step_dir: Path) -> dict[str, Any]:
    for step in report.get("steps", []):
        if Path(str(step.get("dir", ""))).resolve() == step_dir:
            return dict(step)
    prefix = step_dir.name.split("-", 1)[0]
    for step in report.get("steps", []):
        if prefix.isdigit() and int(step.get("index", -1)) == int(prefix):
            return dict(step)
    raise InvalidBundle(f"report.json does not describe step {step_dir.name}", "point at a step folder of this run")


def _fraction(accuracy: Any) -> float | None:
    # The compress report gives accuracy in percent; the manifest in [0, 1].
    if not isinstance(accuracy, (int, float)):
        return None
    return round(float(accuracy) / 100.0, 5) if accuracy > 1.0 else float(accuracy)


def _params(params: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(params.items()))


def _checkpoint_meta(checkpoint_path: Any) -> dict[str, Any]:
    """The `meta` of an edgewise checkpoint next to the step, or {} (no torch import without one)."""
    if not checkpoint_path or not Path(str(checkpoint_path)).is_file():
        return {}
    try:
        import torch

        payload = torch.load(str(checkpoint_path), map_location="cpu", weights_only=True)
    except Exception:  # an unreadable checkpoint only loses optional metadata
        return {}
    meta = payload.get("meta", {}) if isinstance(payload, dict) else {}
    return dict(meta) if isinstance(meta, dict) else {}


def dataset_digest(data_dir: Path) -> str:
    """sha256 over the sorted (relative path, file sha256) pairs of every file under `data_dir`."""
    root = Path(data_dir)
    if not root.is_dir():
        raise ConfigError(f"dataset folder {root} not found", "give the image folder the model was trained on")
    listing = "\n".join(f"{p.relative_to(root).as_posix()} {sha256_file(p)}"
                        for p in sorted(root.rglob("*")) if p.is_file())
    return "sha256:" + sha256_bytes(listing.encode())


def _card_of_onnx(path: Path, options: BundleOptions) -> ModelCard:
    """The card beside the model or recorded in it, else one made of the options given one by one."""
    from edgewise.studio.cards import inspect_onnx, resolve_card

    given = {k: v for k, v in options.card_fields.items() if v is not None}
    if options.image_size is not None:
        given.setdefault("resize", [options.image_size, options.image_size])
    if options.mean is not None:
        given.setdefault("mean", options.mean)
    if options.std is not None:
        given.setdefault("std", options.std)
    decode = given.pop("decode", None)
    if not given and decode is None:
        try:
            return resolve_card(path)
        except ConfigError as error:
            fix = (f"pass --card CARD.yaml (write one: `edgewise inspect {path} --out CARD.yaml`), or the card's "
                   "fields: --color-order, --input-size, --resize-mode, --scale, --mean, --std")
            raise ConfigError(error.message, fix) from None
    proposal = inspect_onnx(path, {"input": given, "output": {"decode": decode}}).proposal
    return card_from_dict(proposal, f"the input of {path.name} as given by the options")


def bundle_from_steps(out_dir: Path, step_dirs: list[Path], options: BundleOptions) -> Manifest:
    """One bundle whose variants are the steps' models; the first step fills the metadata."""
    if not step_dirs:
        raise ConfigError("no compress steps given", "pass at least one --from-run RUN/steps/NN-name")
    steps = [read_step(step_dir) for step_dir in step_dirs]
    first = steps[0]
    meta = first.checkpoint_meta
    merged = BundleOptions(**{**options.__dict__})
    merged.labels = options.labels or first.labels
    merged.image_size = options.image_size or first.image_size or None
    merged.mean = options.mean or meta.get("mean") or STUDIO_MEAN
    merged.std = options.std or meta.get("std") or STUDIO_STD
    merged.target = options.target or first.target
    merged.parent = options.parent or first.parent
    merged.dataset_digest = options.dataset_digest or meta.get("dataset_digest") or first.dataset_digest
    merged.card = options.card or first.card
    if merged.card is not None:
        merged.labels = options.labels or list(merged.card.labels) or first.labels
        merged.image_size = merged.card.input.resize[0]
    names = [s.variant.name for s in steps]
    if len(set(names)) != len(names):
        raise ConfigError(f"two steps give the same variant {names}", "bundle steps for different targets/precisions")
    return _build(out_dir, [s.variant for s in steps], merged, first.metrics, first.recipe)


def bundle_from_onnx(out_dir: Path, variants: list[VariantSource], options: BundleOptions) -> Manifest:
    """A bundle from ONNX files and explicit options (labels are required)."""
    if not variants:
        raise ConfigError("no model given", "pass --onnx MODEL.onnx")
    for variant in variants:
        variant.precision = precision_for_manifest(variant.precision)
    options.card = options.card or _card_of_onnx(variants[0].path, options)
    options.labels = options.labels or list(options.card.labels) or None
    options.image_size = options.card.input.resize[0]
    sizes = {"size_bytes": variants[0].path.stat().st_size} if variants[0].path.is_file() else {}
    return _build(out_dir, variants, options, Metrics(**sizes), [])


def _build(out_dir: Path, variants: list[VariantSource], options: BundleOptions, metrics: Metrics,
           recipe: list[str]) -> Manifest:
    if not options.labels:
        raise ConfigError("the bundle has no labels", "pass --labels cat,dog (one per class, in output order)")
    if not options.image_size and options.card is None:
        raise ConfigError("the model's input size is unknown", "pass --image-size N")
    size = options.image_size or 0
    single = len(variants) == 1
    try:
        manifest = _manifest(variants, options, metrics, recipe, size, single)
    except ValidationError as error:
        raise ConfigError(f"bundle manifest field {describe_validation(error, first_only=True)}",
                          "fix the bundle option named above") from None
    files = {variant.file: source.path for variant, source in zip(manifest.variants, variants, strict=True)}
    return create_bundle(out_dir, manifest, files)


def _manifest(variants: list[VariantSource], options: BundleOptions, metrics: Metrics, recipe: list[str],
              size: int, single: bool) -> Manifest:
    if options.card is not None:
        card = options.card
        if card.task != options.task and options.task != "classify":
            raise ConfigError(f"--task {options.task} but the model card says {card.task}", "fix one of them")
        task, input_spec, output_spec = card.task, card.input, card.output
    else:  # a studio-trained model: the preprocessing studio/datasets.py trains with
        task, output_spec = options.task, options.output
        input_spec = InputSpec(shape=[1, 3, size, size], resize=[size, size], mean=options.mean or STUDIO_MEAN,
                               std=options.std or STUDIO_STD)
    return Manifest(
        name=options.name, version=options.version, task=task, labels=options.labels,
        input=input_spec, output=output_spec, target=options.target or "x86-host",
        precision=variants[0].precision,  # type: ignore[arg-type]
        variants=[Variant(name=v.name, file="model.onnx" if single else f"{v.name}.onnx", precision=v.precision,
                          target_families=v.target_families) for v in variants],  # type: ignore[arg-type]
        metrics=metrics,
        lineage=Lineage(parent=options.parent, recipe=recipe, dataset_digest=options.dataset_digest,
                        created_by=options.created_by,
                        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds")),
    )
