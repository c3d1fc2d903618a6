"""Search space files: good ones parse into Optuna distributions, bad ones name the parameter."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from edgewise.core.errors import ConfigError
from edgewise.studio.tune.space import load_space, parse_space

SPACES_DIR = Path(__file__).parents[2] / "src" / "edgewise" / "studio" / "tune" / "spaces"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_parses_every_parameter_type(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, """
params:
  lr: {type: float, low: 1e-4, high: 0.1, log: true}
  width: {type: float, low: 0.25, high: 1.0, step: 0.25}
  epochs: {type: int, low: 2, high: 8}
  optimizer: {type: categorical, choices: [sgd, adamw]}
fixed:
  arch: cnn-small
"""))
    dists = space.distributions()
    assert dists["lr"] == FloatDistribution(1e-4, 0.1, log=True)
    assert dists["width"] == FloatDistribution(0.25, 1.0, step=0.25)
    assert dists["epochs"] == IntDistribution(2, 8)
    assert dists["optimizer"] == CategoricalDistribution(["sgd", "adamw"])
    assert space.fixed == {"arch": "cnn-small"}
    assert space.grid()["width"] == [0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("name", sorted(p.name for p in SPACES_DIR.glob("*.yaml")))
def test_shipped_example_spaces_are_valid(name: str) -> None:
    assert load_space(SPACES_DIR / name).params


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("params: [unclosed", "malformed YAML"),
        ("- just\n- a list\n", "must be a mapping"),
        ("fixed: {arch: x}\n", "'params' must be a non-empty mapping"),
        ("params:\n  lr: {type: exponential, low: 1, high: 2}\n", "parameter 'lr' has unknown type 'exponential'"),
        ("params:\n  lr: 0.1\n", "parameter 'lr' must be a mapping"),
        ("params:\n  epochs: {type: int, low: 9, high: 2}\n", "parameter 'epochs'"),
        ("params:\n  lr: {type: float, low: 0, high: 1, log: true}\n", "log scale needs low > 0"),
        ("params:\n  lr: {type: float, low: 0.1, high: 0.01}\n", "must be <= high"),
        ("params:\n  opt: {type: categorical, choices: []}\n", "parameter 'opt'"),
        ("params:\n  opt: {type: categorical, choices: [a, a]}\n", "choices must be unique"),
        ("params:\n  lr: {type: float, low: 0.1, high: 1, bogus: 3}\n", "parameter 'lr' field 'bogus'"),
        ("params:\n  lr: {type: float, low: abc, high: 1}\n", "parameter 'lr' field 'low'"),
    ],
)
def test_bad_space_files_raise_config_errors_naming_the_problem(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_space(write(tmp_path, text))
    assert expected in caught.value.message
    assert "space.yaml" in caught.value.message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_space(tmp_path / "nope.yaml")


def test_parse_space_accepts_a_mapping() -> None:
    space = parse_space({"params": {"n": {"type": "int", "low": 1, "high": 64, "log": True}}})
    assert space.distributions()["n"] == IntDistribution(1, 64, log=True)
