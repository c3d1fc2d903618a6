from __future__ import annotations

import pytest

from edgewise.core.errors import ConfigError
from edgewise.core.plugins import Registry


def test_registry_lists_gets_and_refuses_duplicates() -> None:
    class Prune:
        """Remove channels."""

    steps: Registry[type] = Registry.of("compression step", {"prune": Prune})
    assert steps.get("prune") is Prune
    assert [e.summary for e in steps] == ["Remove channels."]
    with pytest.raises(ConfigError, match="registered twice"):
        steps.add("prune", Prune)
    with pytest.raises(ConfigError) as info:
        steps.get("quantise")
    assert "prune" in info.value.fix
