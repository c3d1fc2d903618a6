from __future__ import annotations

import pytest

from edgewise.agent.config import load_settings
from edgewise.agent.fault_injection import CRASH_ENV, crash_hook_from_env
from edgewise.core.errors import ConfigError

GOOD = """
data_dir = "{data}"
threads = 1
drop_policy = "none"
[source]
kind = "synthetic"
frames = 10
[[rules]]
labels = ["scratch"]
consecutive = 2
[health]
max_latency_ms = 50
"""


def test_agent_toml_is_parsed(tmp_path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(GOOD.format(data=tmp_path / "d"))
    settings = load_settings(path)
    assert settings.source.frames == 10 and settings.rules[0].consecutive == 2
    assert settings.health.max_latency_ms == 50


@pytest.mark.parametrize("bad, key", [
    ("[source]\nknd = 'synthetic'\n", "source.knd"),
    ("[[rules]]\nconsecutive = 0\n", "rules.0.consecutive"),
    ("treads = 2\n", "treads"),
    ("drop_policy = 'oldest'\n", "drop_policy"),
])
def test_bad_keys_are_named(tmp_path, bad: str, key: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(bad)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(path)


def test_missing_and_malformed_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "none.toml")
    (tmp_path / "x.toml").write_text("= nope")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(tmp_path / "x.toml")


def test_the_crash_hook_is_an_environment_variable_not_a_setting(tmp_path, monkeypatch) -> None:
    assert crash_hook_from_env({}) is None
    assert callable(crash_hook_from_env({CRASH_ENV: "verify"}))
    with pytest.raises(ConfigError, match="not an update state"):
        crash_hook_from_env({CRASH_ENV: "verfy"})
    monkeypatch.setenv(CRASH_ENV, "verify")
    with pytest.raises(ConfigError, match="crash_in_state"):  # no agent.toml can turn it on
        load_settings(None, {"data_dir": str(tmp_path), "crash_in_state": "verify"})


def test_the_example_config_loads_and_every_setting_is_documented() -> None:
    from pathlib import Path

    from edgewise.agent.config import AgentSettings

    root = Path(__file__).parents[2]
    example = load_settings(root / "deploy" / "agent" / "agent.example.toml")
    assert example.rules[0].labels == ["scratch", "crack"]
    docs = (root / "docs" / "agent.md").read_text()
    undocumented = []
    for name, field in AgentSettings.model_fields.items():
        spellings = (f"`{name}`", f"`{name},", f" {name}`", f"`{name}.", f"`{name}[]")
        if not any(spelling in docs for spelling in spellings):
            undocumented.append(name)
        sub = field.annotation
        inner = getattr(sub, "model_fields", None) or getattr(getattr(sub, "__args__", [None])[0], "model_fields", {})
        for sub_name in inner or {}:
            if sub_name not in docs:
                undocumented.append(f"{name}.{sub_name}")
    assert not undocumented, f"settings missing from docs/agent.md: {undocumented}"
