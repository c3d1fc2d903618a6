from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgewise", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_errors_are_one_line_with_a_fix_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("x")
    result = run_cli("keys", "new", str(tmp_path / "k"))
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "fix:" in result.stderr
    assert "Traceback" not in result.stderr


def test_keys_new_creates_pair(tmp_path: Path) -> None:
    result = run_cli("keys", "new", str(tmp_path / "pub.key"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "pub.key.pub").read_text().strip()


def test_usage_errors_are_shown_as_usage_not_as_unexpected() -> None:
    result = run_cli("keys", "new", "--no-such-option")
    assert result.returncode == 2
    assert "No such option" in result.stderr
    assert "unexpected error" not in result.stderr


def test_version_prints_the_package_version() -> None:
    import edgewise

    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == edgewise.__version__
