"""The model zoo: edge architectures behind one registry, built with `create_model(arch, ...)`.

One module per family registers its variants into `ARCHS` explicitly (no import-time magic
beyond this file). Every model is a `Classifier` with `features` and a linear `classifier`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from edgewise.core.errors import ConfigError
from edgewise.core.plugins import Registry
from edgewise.studio.zoo import mobilenet, resnet, simple_cnn, torchvision_models
from edgewise.studio.zoo._layers import Classifier

ModelFactory = Callable[..., nn.Module]

ARCHS: Registry[ModelFactory] = Registry("architecture")
for _family in (simple_cnn, resnet, mobilenet, torchvision_models):
    _family.register(ARCHS)


def create_model(arch: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build `arch` with a `num_classes`-way head; kwargs are the family's options (e.g. width)."""
    factory = ARCHS.get(arch)
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}", "add more class folders")
    if "width" in kwargs and not 0.1 <= float(kwargs["width"]) <= 4.0:
        raise ConfigError(f"width {kwargs['width']} is out of range", "use a width multiplier between 0.1 and 4")
    try:
        return factory(num_classes, **kwargs)
    except TypeError as error:
        raise ConfigError(f"architecture {arch!r} does not take these options: {error}",
                          "drop the option or pick another architecture") from error


__all__ = ["ARCHS", "Classifier", "create_model"]
