"""Pretrained starting points from disk: `train --weights FILE`.

A weights file is an edgewise checkpoint, a plain PyTorch state dict (`.pt`/`.pth`, also nested
under `state_dict`/`model`, or saved from DataParallel with `module.` prefixes) or a
`.safetensors` file (tensors only: nothing is unpickled). Every zoo model is a `Classifier`
(`features` + a linear `classifier` head), while torchvision and timm state dicts name the
backbone at the top level and the head `fc`, `classifier`, `head`...; so the file's keys are
matched to the model's under the renaming that fits the most tensors, the source's own head is
set aside (a new head is built for the user's classes), and anything else that does not fit is a
one-line error naming the first tensor. Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgewise.core.errors import ModelError

HEAD_PREFIX = "classifier."
_WRAPPERS = ("module.", "model.", "_orig_mod.")  # DataParallel, Lightning, torch.compile


@dataclass
class LoadedWeights:
    loaded: int  # tensors copied into the backbone
    head_dropped: list[str]  # the source's own head, replaced for the new classes
    renaming: str


def read_state(path: Path) -> Mapping[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist", "check the path")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as error:
            raise ModelError(f"{path} is not a readable safetensors file: {error}", "download or save it again") \
                from None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError...
        raise ModelError(f"{path} is not a weights file edgewise can read ({error.__class__.__name__})",
                         "give a state dict saved with torch.save(model.state_dict(), f) or a .safetensors file") \
            from None
    if isinstance(payload, Mapping):
        for key in ("state_dict", "model_state_dict", "model", "state_dict_ema"):
            if isinstance(payload.get(key), Mapping):
                payload = payload[key]
                break
        if payload and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload.items()):
            return payload
    raise ModelError(f"{path} holds no state dict (a mapping of names to tensors)",
                     "save the weights with torch.save(model.state_dict(), path)")


def _unwrapped(name: str) -> str:
    for prefix in _WRAPPERS:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


_RENAMINGS: dict[str, Callable[[str], str]] = {
    "as named": lambda name: name,
    "backbone under features.": lambda name: "features." + name,
}


def load_pretrained(model: nn.Module, path: Path, *, keep_head: bool = False) -> LoadedWeights:
    """Copy the file's backbone into `model` (a Classifier); its head is replaced unless `keep_head`."""
    state = {_unwrapped(k): v for k, v in read_state(path).items()}
    expected = model.state_dict()
    backbone = {k for k in expected if not k.startswith(HEAD_PREFIX)}

    def fits(renamed: dict[str, str]) -> int:
        return sum(1 for source, target in renamed.items()
                   if target in backbone and tuple(state[source].shape) == tuple(expected[target].shape))

    options = {label: {k: rename(k) for k in state} for label, rename in _RENAMINGS.items()}
    label, renamed = max(options.items(), key=lambda item: fits(item[1]))
    head_in = expected[HEAD_PREFIX + "weight"].shape[1]
    copied: dict[str, torch.Tensor] = {}
    head: list[str] = []
    for source, target in renamed.items():
        tensor = state[source]
        if target in backbone and tuple(tensor.shape) == tuple(expected[target].shape):
            copied[target] = tensor
        elif keep_head and target.startswith(HEAD_PREFIX) and tuple(tensor.shape) == tuple(expected[target].shape):
            copied[target] = tensor
        elif _is_head(source, tensor, head_in, state):
            head.append(source)
        else:
            where = expected.get(target)
            shape = f"shape {tuple(tensor.shape)}, the model's {tuple(where.shape)}" if where is not None else \
                "no tensor of that name in the model"
            raise ModelError(f"weights {Path(path).name} do not fit this architecture: {source!r} ({shape}; "
                             f"{fits(renamed)} of {len(backbone)} backbone tensors matched)",
                             "use the --arch the weights were trained for (same family and width)")
    missing = sorted(backbone - set(copied))
    if missing:
        raise ModelError(f"weights {Path(path).name} lack backbone tensor {missing[0]!r} ({len(copied)} of "
                         f"{len(backbone)} matched)", "use the --arch the weights were trained for")
    model.load_state_dict(copied, strict=False)  # strict=False only leaves the new head as initialised
    return LoadedWeights(len(copied), head, label)


def _is_head(name: str, tensor: torch.Tensor, feature_dim: int, state: Mapping[str, torch.Tensor]) -> bool:
    """The source's classification layer: a 2-D weight reading the backbone's feature size, or its bias."""
    if tensor.ndim == 2 and tensor.shape[1] == feature_dim:
        return True
    if tensor.ndim == 1 and name.endswith(".bias"):
        weight = state.get(name[: -len("bias")] + "weight")
        return weight is not None and weight.ndim == 2 and weight.shape[1] == feature_dim
    return False


def freeze(model: nn.Module, stages: int | None) -> list[str]:
    """Freeze the first `stages` blocks of the backbone (None: all of it); returns their names."""
    children = list(model.features.named_children())  # type: ignore[union-attr]
    count = len(children) if stages is None else stages
    if count > len(children):
        raise ModelError(f"--freeze-stages {stages}: the backbone has {len(children)} blocks",
                         f"freeze at most {len(children)}")
    for _, block in children[:count]:
        for parameter in block.parameters():
            parameter.requires_grad = False
    return [name for name, _ in children[:count]]


def frozen_blocks(model: nn.Module, names: list[str]) -> list[nn.Module]:
    """The frozen blocks, whose BatchNorm statistics stay the pretrained ones (kept in eval mode)."""
    return [module for name, module in model.features.named_children() if name in names]  # type: ignore[union-attr]
