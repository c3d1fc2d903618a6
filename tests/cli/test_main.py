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


def test_a_command_whose_extra_is_missing_names_the_extra_to_install(tmp_path: Path) -> None:
    # An agent-only install has no torch and no uvicorn: block both as if they were not installed.
    script = ("import sys; sys.modules['torch'] = None; sys.modules['uvicorn'] = None\n"
              "from edgewise.cli.main import main\nsys.exit(main(sys.argv[1:]))")
    for args, extra in ((["train", "--list-archs"], "studio"),
                        (["server", "--db", f"sqlite:///{tmp_path / 'f.db'}", "--port", "1"], "server")):
        result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 1, result.stderr
        assert f"edgewise[{extra}]" in result.stderr and "ModuleNotFoundError" not in result.stderr
        assert "Traceback" not in result.stderr


def test_server_errors_name_the_real_problem(tmp_path: Path) -> None:
    import socket

    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    missing = run_cli("server", "--db", db, "--trust", str(tmp_path / "missing.pub"), "--port", "0")
    assert missing.returncode == 1
    assert "missing.pub not found" in missing.stderr and "not valid base64" not in missing.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = run_cli("server", "--db", db, "--port", str(port))
    assert taken.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in taken.stderr and "Errno" not in taken.stderr


def test_private_keys_are_private_and_ignored_by_git(tmp_path: Path) -> None:
    assert run_cli("keys", "new", str(tmp_path / "publisher.key")).returncode == 0
    assert (tmp_path / "publisher.key").stat().st_mode & 0o077 == 0
    root = Path(__file__).resolve().parents[2]
    ignored = subprocess.run(["git", "check-ignore", "-q", "publisher.key"], cwd=root)
    if ignored.returncode == 128:  # not a git checkout (a source tarball): read the ignore file itself
        import fnmatch

        patterns = (root / ".gitignore").read_text().split()
        assert any(fnmatch.fnmatch("publisher.key", p.lstrip("/")) for p in patterns)
    else:
        assert ignored.returncode == 0, "a private key in the checkout must be ignored by git"
