"""`train --weights`: state dicts in other layouts, safetensors, freezing and discriminative rates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edgewise.core.errors import ModelError
from edgewise.studio.pretrained import freeze, load_pretrained
from edgewise.studio.zoo import create_model


def _torchvision_layout(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The same weights named as torchvision/timm name them: backbone at the top level, head `fc`,
    saved from DataParallel (`module.` prefixes)."""
    state = {}
    for name, tensor in model.state_dict().items():
        renamed = name.removeprefix("features.").replace("classifier.", "fc.")
        state["module." + renamed] = tensor.clone()
    return state


def test_a_torchvision_layout_state_dict_loads_with_a_new_head(tmp_path: Path) -> None:
    source = create_model("resnet-tiny", 10)
    path = tmp_path / "backbone.pth"
    torch.save(_torchvision_layout(source), path)
    target = create_model("resnet-tiny", 4)
    found = load_pretrained(target, path)
    assert found.renaming == "backbone under features." and sorted(found.head_dropped) == ["fc.bias", "fc.weight"]
    for name, tensor in source.state_dict().items():
        if name.startswith("features."):
            assert torch.equal(target.state_dict()[name], tensor)
    assert target.classifier.weight.shape == (4, source.classifier.weight.shape[1])


def test_safetensors_and_a_wrong_architecture(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = create_model("cnn-small", 10)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    assert load_pretrained(create_model("cnn-small", 3), path).loaded > 0
    with pytest.raises(ModelError, match="do not fit this architecture") as caught:
        load_pretrained(create_model("resnet-tiny", 3), path)
    assert "\n" not in str(caught.value)
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ModelError, match="not a readable safetensors"):
        load_pretrained(create_model("cnn-small", 3), tmp_path / "junk.safetensors")


def test_training_from_weights_freezes_stages_and_slows_the_backbone(small_parts: Path, tmp_path: Path) -> None:
    from edgewise.studio.train import TrainConfig, _optimizer, build_model, train

    source = create_model("cnn-small", 10, width=0.5)
    torch.save(_torchvision_layout(source), tmp_path / "w.pth")
    config = TrainConfig(arch="cnn-small", width=0.5, epochs=1, batch_size=32, num_threads=2, device="cpu",
                         weights=tmp_path / "w.pth", freeze_stages=2, backbone_lr_scale=0.1, lr=1e-3)
    start = build_model(config, ["a", "b", "c", "d"], {"width": 0.5})
    groups = _optimizer(config, start.model).param_groups
    assert [g["lr"] for g in groups] == [pytest.approx(1e-3), pytest.approx(1e-4)]
    assert len(start.frozen) == 2
    result = train(config, small_parts, tmp_path / "out", progress=False)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert "replaced for 4 classes" in metrics["pretrained"] and metrics["frozen_blocks"] == start.frozen
    frozen_names = [f"features.{block}." for block in start.frozen]
    for name, tensor in result.model.state_dict().items():  # frozen blocks (BatchNorm stats too) are untouched
        if name.startswith(tuple(frozen_names)):
            original = source.state_dict()[name]
            assert torch.equal(tensor, original), name
    with pytest.raises(ModelError, match="backbone has"):
        freeze(create_model("cnn-small", 3), 99)
