from __future__ import annotations

import pytest

from edgewise.agent.config import CRASH_ENV, load_settings
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
    assert settings.health.max_latency_ms == 50 and settings.crash_in_state is None


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


def test_crash_hook_comes_from_the_environment_in_one_place(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(CRASH_ENV, "verify")
    assert load_settings(None, {"data_dir": str(tmp_path)}).crash_in_state == "verify"
