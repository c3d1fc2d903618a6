"""Checkpoints: our format, plain state dicts, TorchScript, and checkpoints that do not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgewise.core.errors import ModelError
from edgewise.studio.checkpoints import load_checkpoint, save_checkpoint
from edgewise.studio.zoo import create_model

CLASSES = ["crack", "hole", "ok", "scratch"]


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sample = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        return torch.allclose(a.eval()(sample), b.eval()(sample))


def test_round_trip_keeps_weights_and_metadata(tmp_path: Path) -> None:
    model = create_model("resnet-tiny", 4, width=0.5)
    path = save_checkpoint(tmp_path / "m.pt", model, "resnet-tiny", CLASSES, 32, {"note": "x"},
                           model_kwargs={"width": 0.5})
    loaded = load_checkpoint(path)
    assert (loaded.arch, loaded.classes, loaded.image_size, loaded.meta["note"]) == ("resnet-tiny", CLASSES, 32, "x")
    assert _same_outputs(model, loaded.model)


def test_plain_state_dict_needs_and_uses_arch(tmp_path: Path) -> None:
    model = create_model("cnn-small", 4)
    path = tmp_path / "plain.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(ModelError, match="plain state dict") as info:
        load_checkpoint(path)
    assert "--arch" in info.value.fix
    loaded = load_checkpoint(path, arch="cnn-small")
    assert len(loaded.classes) == 4 and _same_outputs(model, loaded.model)


def test_wrong_arch_names_the_layer(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save(create_model("cnn-small", 4).state_dict(), path)
    with pytest.raises(ModelError, match="does not fit 'resnet-tiny': layer 'features"):
        load_checkpoint(path, arch="resnet-tiny")


def test_wrong_width_names_the_layer_and_shapes(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save(create_model("cnn-small", 4, width=0.5).state_dict(), path)
    with pytest.raises(ModelError, match=r"layer 'features.0.0.weight' has shape \(16, 3, 3, 3\)"):
        load_checkpoint(path, arch="cnn-small")


def test_own_checkpoint_with_other_arch_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", create_model("cnn-small", 4), "cnn-small", CLASSES, 32)
    with pytest.raises(ModelError, match="holds a 'cnn-small' model, not 'mobilenetv2-tiny'"):
        load_checkpoint(path, arch="mobilenetv2-tiny")


def test_torchscript_file_loads(tmp_path: Path) -> None:
    model = create_model("cnn-small", 4).eval()
    path = tmp_path / "scripted.pt"
    torch.jit.trace(model, torch.randn(1, 3, 32, 32)).save(str(path))
    loaded = load_checkpoint(path, num_classes=4)
    assert loaded.meta["source"] == "torchscript" and _same_outputs(model, loaded.model)


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a checkpoint edgewise can read"):
        load_checkpoint(garbage)
    with pytest.raises(ModelError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
