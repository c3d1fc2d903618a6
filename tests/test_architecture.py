"""DESIGN.md's import rules, checked on the installed package as a user would import it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _modules_loaded_by(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize(
    "code",
    [
        "import edgewise.cli.main",
        "from edgewise.cli.main import main\nmain(['agent', '--help'])",
        "import edgewise.agent, edgewise.core.manifest, edgewise.core.wire",
    ],
)
def test_cli_and_agent_paths_never_load_torch(code: str) -> None:
    assert "torch" not in _modules_loaded_by(code)


def test_import_linter_contracts_hold() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports), "--no-cache"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
