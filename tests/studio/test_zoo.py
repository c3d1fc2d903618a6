"""The zoo: every architecture builds, runs, exports to ONNX and can be pruned."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgewise.core.errors import ConfigError
from edgewise.studio.export import export_onnx
from edgewise.studio.zoo import ARCHS, create_model

OWN_ARCHS = ["cnn-small", "mobilenetv2-tiny", "mobilenetv3-small", "resnet-small", "resnet-tiny"]


def test_registry_lists_the_edge_families() -> None:
    assert set(OWN_ARCHS) <= set(ARCHS.names())
    try:
        import torchvision  # noqa: F401
    except ImportError:
        assert not [name for name in ARCHS.names() if name.startswith("tv-")]


@pytest.mark.parametrize("arch", OWN_ARCHS)
def test_forward_and_onnx_export(arch: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(arch, 4).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    result = export_onnx(model, tmp_path / f"{arch}.onnx", image_size=32)
    assert result.max_abs_diff <= 1e-4 == result.tolerance


def test_width_multiplier_scales_the_model() -> None:
    def count(model: torch.nn.Module) -> int:
        return sum(p.numel() for p in model.parameters())

    assert count(create_model("mobilenetv2-tiny", 4, width=0.5)) < count(create_model("mobilenetv2-tiny", 4))


def test_mobilenets_use_depthwise_convolutions() -> None:
    for arch in ("mobilenetv2-tiny", "mobilenetv3-small"):
        convs = [m for m in create_model(arch, 4).modules() if isinstance(m, torch.nn.Conv2d)]
        assert any(c.groups == c.in_channels > 1 for c in convs), arch


@pytest.mark.parametrize("arch", ["cnn-small", "mobilenetv2-tiny", "mobilenetv3-small", "resnet-small"])
def test_prunable_by_torch_pruning(arch: str) -> None:
    import torch_pruning as tp

    torch.manual_seed(0)
    model = create_model(arch, 4).eval()
    example = torch.randn(1, 3, 32, 32)
    before = sum(p.numel() for p in model.parameters())
    pruner = tp.pruner.MagnitudePruner(model, example, importance=tp.importance.MagnitudeImportance(p=1),
                                       pruning_ratio=0.3, ignored_layers=[model.classifier])
    pruner.step()
    after = sum(p.numel() for p in model.parameters())
    assert after < 0.8 * before
    assert model(example).shape == (1, 4)


def test_unknown_arch_and_bad_options() -> None:
    with pytest.raises(ConfigError, match="unknown architecture 'vgg99'") as info:
        create_model("vgg99", 4)
    assert "cnn-small" in info.value.fix
    with pytest.raises(ConfigError, match="at least 2 classes"):
        create_model("cnn-small", 1)
    with pytest.raises(ConfigError, match="does not take these options"):
        create_model("cnn-small", 4, depth=50)
