"""Model checkpoints: our own format, plain state dicts, and TorchScript files.

Our format is a dict `{"format": "edgewise-checkpoint", "version", "arch", "kwargs", "classes",
"image_size", "state_dict", "meta"}` saved with `torch.save`; it loads with `weights_only=True`.
A checkpoint that does not fit the architecture raises a ModelError naming the first layer
that differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgewise.core.errors import ModelError
from edgewise.studio.zoo import create_model

FORMAT = "edgewise-checkpoint"
FORMAT_VERSION = 1
HEAD_PREFIX = "classifier."


@dataclass
class LoadedModel:
    model: nn.Module
    arch: str
    classes: list[str]
    image_size: int | None
    meta: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(path: Path, model: nn.Module, arch: str, classes: list[str], image_size: int,
                    extra: Mapping[str, Any] | None = None, *, model_kwargs: Mapping[str, Any] | None = None) -> Path:
    """Write `model` with what is needed to rebuild it (arch, build kwargs, classes, input size)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    payload = {
        "format": FORMAT, "version": FORMAT_VERSION, "arch": arch, "kwargs": dict(model_kwargs or {}),
        "classes": list(classes), "image_size": int(image_size), "state_dict": state, "meta": dict(extra or {}),
    }
    torch.save(payload, path)
    return path


def load_checkpoint(path: Path, *, arch: str | None = None, num_classes: int | None = None) -> LoadedModel:
    """Load any supported checkpoint; `arch`/`num_classes` are needed for plain state dicts."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist", "check the path (training writes OUT/best.pt)")
    payload = _read(path)
    if isinstance(payload, torch.jit.ScriptModule):
        classes = [f"class_{i}" for i in range(num_classes)] if num_classes else []
        return LoadedModel(payload.eval(), arch or "torchscript", classes, None, {"source": "torchscript"})
    if isinstance(payload, Mapping) and payload.get("format") == FORMAT:
        return _load_own(path, payload, arch)
    state = _plain_state_dict(path, payload)
    if arch is None:
        raise ModelError(f"{path} is a plain state dict without an architecture",
                         "name it with --arch (see `edgewise train --list-archs`)")
    classes_count = num_classes or _head_size(state)
    if classes_count is None:
        raise ModelError(f"cannot tell the number of classes of {path}", "pass the number of classes explicitly")
    model = create_model(arch, classes_count)
    load_state_strict(model, state, arch, path)
    return LoadedModel(model.eval(), arch, [f"class_{i}" for i in range(classes_count)], None, {"source": "state_dict"})


def _read(path: Path) -> Any:
    if _is_torchscript(path):
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except Exception as error:
            raise ModelError(f"{path} looks like TorchScript but does not load: {error}",
                             "save it again with torch.jit.save") from error
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as load_error:  # not a pickle we accept: maybe TorchScript
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except Exception:
            raise ModelError(f"{path} is not a checkpoint edgewise can read ({load_error.__class__.__name__})",
                             "give an edgewise checkpoint, a plain state dict, or a TorchScript file") from None


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zips holding `<name>/constants.pkl` and compiled `code/`."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def _load_own(path: Path, payload: Mapping[str, Any], arch: str | None) -> LoadedModel:
    stored_arch = str(payload["arch"])
    if arch is not None and arch != stored_arch:
        raise ModelError(f"{path} holds a {stored_arch!r} model, not {arch!r}",
                         f"use --arch {stored_arch} or a checkpoint trained with {arch}")
    classes = list(payload["classes"])
    model = create_model(stored_arch, len(classes), **dict(payload.get("kwargs", {})))
    load_state_strict(model, payload["state_dict"], stored_arch, path)
    meta = dict(payload.get("meta", {}))
    meta["kwargs"] = dict(payload.get("kwargs", {}))
    return LoadedModel(model.eval(), stored_arch, classes, int(payload["image_size"]), meta)


def _plain_state_dict(path: Path, payload: Any) -> Mapping[str, torch.Tensor]:
    if isinstance(payload, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(payload.get(key), Mapping):
                payload = payload[key]
                break
        if payload and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload.items()):
            return payload
    raise ModelError(f"{path} holds no state dict", "save the model with torch.save(model.state_dict(), path)")


def _head_size(state: Mapping[str, torch.Tensor]) -> int | None:
    weight = state.get(HEAD_PREFIX + "weight")
    return int(weight.shape[0]) if weight is not None else None


def load_state_strict(model: nn.Module, state: Mapping[str, torch.Tensor], arch: str, source: Path | str,
                      skip_prefixes: tuple[str, ...] = ()) -> None:
    """Copy `state` into `model`, or raise ModelError naming the first layer that does not fit."""
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(skip_prefixes)}
    given = {k: v for k, v in state.items() if not k.startswith(skip_prefixes)}
    for name, tensor in expected.items():
        if name not in given:
            raise ModelError(f"checkpoint {source} does not fit {arch!r}: layer {name!r} is missing",
                             f"use the architecture the checkpoint was trained with, not {arch!r}")
        if tuple(given[name].shape) != tuple(tensor.shape):
            raise ModelError(
                f"checkpoint {source} does not fit {arch!r}: layer {name!r} has shape "
                f"{tuple(given[name].shape)}, the model expects {tuple(tensor.shape)}",
                "use the same architecture, width and number of classes as the checkpoint")
    unexpected = sorted(set(given) - set(expected))
    if unexpected:
        raise ModelError(f"checkpoint {source} does not fit {arch!r}: unexpected layer {unexpected[0]!r}",
                         f"use the architecture the checkpoint was trained with, not {arch!r}")
    # strict=False only ever skips the replaced head; everything else was checked above.
    model.load_state_dict(given, strict=not skip_prefixes)
