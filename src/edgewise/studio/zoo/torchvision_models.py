"""torchvision's classification models, registered only when torchvision imports.

Weights are never downloaded: models start from random init (or a user's checkpoint). Each is
wrapped as a `Classifier` so freezing the backbone and replacing the head work the same way.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from edgewise.core.plugins import Registry
from edgewise.studio.zoo._layers import Classifier

TORCHVISION_ARCHS = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "resnet18", "shufflenet_v2_x0_5",
                     "efficientnet_b0")


def _wrap(builder: Callable[..., nn.Module]) -> Callable[..., Classifier]:
    def build(num_classes: int, *, dropout: float = 0.0) -> Classifier:
        backbone = builder(weights=None)
        last_name, last_linear = [(n, m) for n, m in backbone.named_modules() if isinstance(m, nn.Linear)][-1]
        parent = backbone.get_submodule(last_name.rpartition(".")[0]) if "." in last_name else backbone
        setattr(parent, last_name.rpartition(".")[2], nn.Identity())
        return Classifier(backbone, last_linear.in_features, num_classes, dropout)

    build.__doc__ = f"torchvision {builder.__name__} (random init), linear head replaced"
    return build


def register(registry: Registry[Callable[..., nn.Module]]) -> None:
    try:
        import torchvision.models as tv_models
    except ImportError:
        return
    for name in TORCHVISION_ARCHS:
        builder = getattr(tv_models, name, None)
        if builder is not None:
            registry.add(f"tv-{name.replace('_', '-')}", _wrap(builder), f"torchvision {name} (no pretrained download)")
