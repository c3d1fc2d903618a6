"""The README and guides are tested: every `edgewise ...` command line they show must name a real
command and only options that command has, so the docs cannot drift from the CLI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command

from edgewise.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _command_lines(text: str) -> list[str]:
    """`edgewise ...` lines from indented or fenced code, with continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = []
    for raw in joined.splitlines():
        line = raw.strip().lstrip("$ ").strip()
        if not line.startswith("edgewise ") or "─►" in line:  # a diagram, not a command
            continue
        lines.append(line.split("  #")[0].split(" # ")[0].rstrip(" &"))
    return lines


def _resolve(words: list[str]) -> tuple[Any, list[str], list[str]]:
    command: Any = get_command(app)
    path: list[str] = []
    rest = list(words)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])  # type: ignore[attr-defined]
        if sub is None:
            break
        command = sub
        path.append(rest.pop(0))
    return command, path, rest


CASES = [(doc.name, line) for doc in DOCS for line in _command_lines(doc.read_text())]


def test_the_docs_show_commands() -> None:
    assert len([c for c in CASES if c[0] == "README.md"]) >= 10


@pytest.mark.parametrize(("doc", "line"), CASES, ids=[f"{d}:{i}" for i, (d, _) in enumerate(CASES)])
def test_documented_command_exists_with_its_options(doc: str, line: str) -> None:
    try:
        words = shlex.split(line)[1:]
    except ValueError:
        pytest.fail(f"{doc}: cannot parse {line!r}")
    command, path, rest = _resolve(words)
    if hasattr(command, "commands") and rest and not rest[0].startswith("-") and rest[0] != "--help":
        pytest.fail(f"{doc}: `edgewise {' '.join(path)} {rest[0]}` is not a command ({line})")
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)} | {"--help"}
    if hasattr(command, "commands"):
        known |= {"--debug", "--version"}
    for word in rest:
        if word.startswith("--"):
            option = word.split("=", 1)[0]
            assert option in known, f"{doc}: `edgewise {' '.join(path)}` has no option {option} ({line})"


def test_every_path_the_docs_name_exists() -> None:
    # docs/architecture.md is the map of the tree: a module moved or renamed must move it too
    named = {(doc.name, path) for doc in DOCS
             for path in re.findall(r"`((?:src|tests|benchmarks)/[\w./-]+)`", doc.read_text())}
    assert any(doc == "architecture.md" for doc, _ in named)
    missing = sorted(f"{doc}: {path}" for doc, path in named if not (ROOT / path.rstrip("/")).exists())
    assert not missing, missing
