"""`quantize`: int8 PTQ (static, QDQ), dynamic int8, fp16, QAT, int4 weight-only, binary/ternary.

Accuracy-aware: with `max_drop`, each quantizable layer's sensitivity is measured on the val
split and the most sensitive layers stay in float until the drop is within budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import onnx
from pydantic import Field

from edgewise.core.errors import RecipeError
from edgewise.studio.compress.measure import export_model, onnx_accuracy
from edgewise.studio.compress.onnx_rewrites import QUANTIZATION_OPSET, upgrade_opset
from edgewise.studio.compress.state import CompressState
from edgewise.studio.compress.steps import _fake_quant, _ort_quant
from edgewise.studio.compress.steps.base import Step, StepParams
from edgewise.studio.compress.targetcheck import float_compute_layers
from edgewise.studio.compress.training import fine_tune

TORCH_MODES = {"qat", "binary", "ternary"}
OUTPUT_PRECISION = {"ptq-static": "int8", "qat": "int8", "dynamic": "int8", "fp16": "fp16", "int4": "int4",
                    "binary": "binary", "ternary": "ternary"}


class QuantizeParams(StepParams):
    mode: Literal["ptq-static", "dynamic", "fp16", "qat", "int4", "binary", "ternary"] = "ptq-static"
    calibration: Literal["minmax", "entropy", "percentile"] = "minmax"
    per_channel: bool = True
    percentile: float = Field(99.999, gt=90, le=100)
    calibration_samples: int = Field(256, ge=1)
    max_drop: float | None = Field(None, ge=0, description="accuracy points the step may lose (val split)")
    exclude_layers: list[str] = Field(default_factory=list)
    qat_epochs: int = Field(2, ge=0)
    lr: float = Field(5e-4, gt=0)
    temperature: float = Field(4.0, gt=0)
    int4_block_size: int = Field(32, ge=16)


class Quantize(Step):
    """Lower precision: int8 static/dynamic, fp16, QAT, int4 weight-only, binary/ternary (experimental)."""

    name = "quantize"
    Params = QuantizeParams
    params: QuantizeParams

    def needs_torch_for(self) -> bool:
        return self.params.mode in TORCH_MODES

    def output_precision(self) -> str:
        return OUTPUT_PRECISION[self.params.mode]

    def leaves_onnx_only(self) -> bool:
        return True  # a quantized ONNX graph: its torch model is no longer what runs

    def takes_accuracy_budget(self) -> bool:
        return self.params.mode in ("ptq-static", "qat")  # accuracy-aware: layers fall back to float

    def apply(self, state: CompressState) -> CompressState:
        p = self.params
        if state.onnx_path is None:
            raise RecipeError("step 'quantize' has no exported model to work on")
        out = state.work_dir / "model.onnx"
        if p.mode in ("binary", "ternary"):
            return self._low_bit(state, out)
        source = state.onnx_path
        if p.mode == "qat":
            source = self._qat_float(state)
        if p.mode in ("ptq-static", "qat", "dynamic"):
            source = self._at_quantization_opset(state, source)
        if p.mode in ("ptq-static", "qat"):
            self._static(state, source, out)
        elif p.mode == "dynamic":
            _ort_quant.dynamic_int8(source, out, per_channel=p.per_channel)
            state.precision = "int8"
            state.notes.append("dynamic int8: weights int8, activations quantized at run time")
        elif p.mode == "fp16":
            _ort_quant.fp16(source, out)
            state.precision = "fp16"
            state.notes.append("fp16 weights and compute; inputs and outputs stay fp32")
        else:
            _ort_quant.int4_weight_only(source, out, p.int4_block_size)
            state.precision = "int4"
            state.notes.append("int4 weight-only (MatMulNBits) on MatMul layers; other layers stay float")
        (state.work_dir / "opset-upgraded.onnx").unlink(missing_ok=True)
        state.onnx_path = out
        state.torch_current = False
        return state

    @staticmethod
    def _at_quantization_opset(state: CompressState, source: Path) -> Path:
        upgraded = state.work_dir / "opset-upgraded.onnx"
        old = upgrade_opset(source, upgraded)
        if old is None:
            return source
        state.notes.append(f"opset {old} upgraded to {QUANTIZATION_OPSET} first (int8 QDQ per channel needs it)")
        return upgraded

    def _static(self, state: CompressState, source: Path, out: Path) -> None:
        p = self.params
        prepared = _ort_quant.preprocess(source, state.work_dir / "prepared.onnx")
        layers = _ort_quant.name_nodes(prepared)
        unknown = sorted(set(p.exclude_layers) - set(layers))
        if unknown:
            raise RecipeError(f"step 'quantize': exclude_layers names unknown layer(s) {', '.join(unknown)}",
                              f"use layer names of the exported model: {', '.join(layers)}")
        batches = _ort_quant.calibration_batches(state.data.train, p.calibration_samples, prepared)

        per_channel = p.per_channel
        if p.max_drop is not None:
            per_channel = self._better_granularity(state, prepared, batches)

        def quantize(excluded: list[str], destination: Path = out) -> Path:
            return _ort_quant.static_int8(
                prepared, destination, batches, calibration=p.calibration, per_channel=per_channel,
                percentile=p.percentile, exclude=[*p.exclude_layers, *excluded],
            )

        quantize([])
        kept: list[str] = []
        if p.max_drop is not None:
            kept = self._keep_sensitive_layers(state, prepared, layers, quantize)
        granularity = "per-channel" if per_channel else "per-tensor"
        state.notes.append(f"static int8 QDQ, {p.calibration} calibration on {sum(len(b) for b in batches)} "
                           f"images, {granularity} weights")
        float_layers = float_compute_layers(onnx.load(str(out), load_external_data=False).graph)
        state.precision = "int8-mixed" if float_layers else "int8"
        state.details["kept_float_layers"] = [*p.exclude_layers, *kept]
        for leftover in (prepared, state.work_dir / "sensitivity.onnx", state.work_dir / "opset-upgraded.onnx"):
            leftover.unlink(missing_ok=True)

    def _better_granularity(self, state: CompressState, prepared: Path, batches: list) -> bool:
        """Accuracy-aware runs try both weight granularities and keep the one better on val.

        Per-channel scales are usually better, not always: on a small CNN whose channels have
        similar ranges, per-tensor rounding can lose fewer images (measured, not assumed)."""
        p = self.params
        probe = state.work_dir / "granularity.onnx"
        accuracy = {}
        for per_channel in (p.per_channel, not p.per_channel):
            _ort_quant.static_int8(prepared, probe, batches, calibration=p.calibration, per_channel=per_channel,
                                   percentile=p.percentile, exclude=p.exclude_layers)
            accuracy[per_channel] = onnx_accuracy(probe, state.data.val)
        probe.unlink(missing_ok=True)
        chosen = p.per_channel if accuracy[p.per_channel] >= accuracy[not p.per_channel] else not p.per_channel
        state.details["val_accuracy_by_granularity"] = {
            ("per-channel" if k else "per-tensor"): round(v, 3) for k, v in accuracy.items()}
        if chosen != p.per_channel:
            state.notes.append(f"{'per-channel' if chosen else 'per-tensor'} weights kept: {accuracy[chosen]:.2f} % "
                               f"on val against {accuracy[p.per_channel]:.2f} % as configured")
        return chosen

    def _keep_sensitive_layers(self, state: CompressState, prepared: Path, layers: list[str], quantize) -> list[str]:
        budget = float(self.params.max_drop or 0.0)
        float_accuracy = onnx_accuracy(prepared, state.data.val)
        drop = float_accuracy - onnx_accuracy(state.work_dir / "model.onnx", state.data.val)
        state.details["int8_drop_all_layers_val"] = round(drop, 3)
        if drop <= budget:
            state.notes.append(f"all layers int8: val drop {drop:.2f} pt within max_drop {budget}")
            return []
        probe = state.work_dir / "sensitivity.onnx"
        sensitivity = {}
        for layer in layers:  # gain in accuracy from keeping this one layer in float
            sensitivity[layer] = onnx_accuracy(quantize([layer], probe), state.data.val) - (float_accuracy - drop)
        state.details["layer_sensitivity_val"] = {k: round(v, 3) for k, v in sensitivity.items()}
        kept: list[str] = []
        for layer in sorted(layers, key=lambda name: -sensitivity[name]):
            kept.append(layer)
            quantize(kept)
            drop = float_accuracy - onnx_accuracy(state.work_dir / "model.onnx", state.data.val)
            if drop <= budget:
                break
        verdict = "within" if drop <= budget else "STILL ABOVE"
        state.notes.append(f"kept {len(kept)} sensitive layer(s) in float: {', '.join(kept)}; "
                           f"val drop {drop:.2f} pt {verdict} max_drop {budget}")
        return kept

    def _qat_float(self, state: CompressState) -> Path:
        model = self._require_torch(state)
        _fake_quant.attach(model, "int8")
        fine_tune(model, state.data.train, epochs=self.params.qat_epochs, lr=self.params.lr,
                  teacher=state.teacher, temperature=self.params.temperature, desc="QAT")
        _fake_quant.bake(model)
        state.notes.append(f"QAT: {self.params.qat_epochs} epoch(s) with fake-quantized int8 weights, distilled")
        return export_model(model, state.work_dir / "qat-float.onnx", state.image_size)

    def _low_bit(self, state: CompressState, out: Path) -> CompressState:
        mode = self.params.mode
        model = self._require_torch(state)
        layers = _fake_quant.attach(model, mode)
        fine_tune(model, state.data.train, epochs=self.params.qat_epochs, lr=self.params.lr,
                  teacher=state.teacher, temperature=self.params.temperature, desc=f"{mode} QAT")
        _fake_quant.bake(model)
        packed = state.work_dir / f"weights-{mode}.npz"
        size = _fake_quant.write_packed(model, layers, mode, packed)
        state.onnx_path = export_model(model, out, state.image_size)
        state.precision = mode  # type: ignore[assignment]
        state.torch_current = False
        state.details.update(packed_weights=str(packed), packed_bytes=size, low_bit_layers=layers)
        state.notes.append(f"EXPERIMENTAL {mode} weights on {len(layers)} layer(s), stored packed in {packed.name} "
                           f"({size} bytes); NOT RUN NATIVELY: no runtime here executes {mode} kernels, so the "
                           "ONNX model holds their float expansion and its size/latency are not the low-bit ones")
        return state

    @staticmethod
    def _require_torch(state: CompressState):
        if state.model is None or not state.torch_current:
            raise RecipeError("quantize modes qat/binary/ternary need the torch model",
                              "start from a checkpoint and put these modes before any ONNX-only step")
        return state.model
