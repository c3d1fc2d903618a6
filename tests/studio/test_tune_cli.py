"""`edgewise tune` as a user runs it: clear errors, two workers on PostgreSQL, resume after SIGKILL.

These use the documented `--objective` test-function mode so each trial costs milliseconds
(`--trial-sleep` stands in for training time) and the suite stays fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

optuna.logging.set_verbosity(optuna.logging.WARNING)


def tune_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgewise", "tune", *args]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(tune_command(*args), capture_output=True, text=True, cwd=cwd, timeout=300)


def assert_clear_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert expected in result.stderr
    assert "fix:" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_sampler_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("--objective", "ackley", "--sampler", "annealing", "--storage", "s.db", cwd=tmp_path)
    assert_clear_error(result, "unknown sampler 'annealing'")
    assert not (tmp_path / "s.db").exists()


def test_unreachable_storage_is_a_clear_error_with_the_password_hidden(tmp_path: Path) -> None:
    from tests.services import free_port

    url = f"postgresql://edgewise:secret@127.0.0.1:{free_port()}/studies"
    started = time.monotonic()
    result = run_cli("--objective", "ackley", "--storage", url, "--study", "s", cwd=tmp_path)
    assert_clear_error(result, "cannot open study storage postgresql://edgewise:***@127.0.0.1")
    assert "secret" not in result.stderr
    assert time.monotonic() - started < 60


def test_malformed_space_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text("params:\n  lr: {type: float, low: 1, high: 0.1}\n")
    (tmp_path / "data").mkdir()
    result = run_cli("--data", "data", "--space", "space.yaml", "--storage", "s.db", cwd=tmp_path)
    assert_clear_error(result, "parameter 'lr'")


def test_space_naming_an_unknown_training_setting_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text("params:\n  learning_rate: {type: float, low: 0.001, high: 0.1}\n")
    (tmp_path / "data").mkdir()
    result = run_cli("--data", "data", "--space", "space.yaml", "--storage", "s.db", cwd=tmp_path)
    assert_clear_error(result, "['learning_rate'] are not training settings")


def test_two_workers_on_postgresql_split_one_study_without_running_a_trial_twice(
    postgres_url: str, tmp_path: Path
) -> None:
    args = ("--objective", "rastrigin", "--dims", "3", "--levels", "8", "--sampler", "tt", "--seed", "0",
            "--trials", "24", "--trial-sleep", "0.5", "--storage", postgres_url, "--study", "shared", "--no-progress")
    # Create the schema and study first, so the two workers do not race to create tables.
    optuna.create_study(study_name="shared", storage=postgres_url, direction="minimize")
    workers = [subprocess.Popen(tune_command(*args), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    outputs = [worker.communicate(timeout=240) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr
    trials = optuna.load_study(study_name="shared", storage=postgres_url).trials
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    # Each worker stops once the study holds 24; the other may be finishing one trial then.
    assert 24 <= len(complete) <= 25
    assert len(trials) == len(complete)
    by_worker: dict[str, list[int]] = {}
    for trial in complete:
        by_worker.setdefault(trial.user_attrs["worker"], []).append(trial.number)
    assert len(by_worker) == 2, by_worker
    assert all(len(numbers) >= 2 for numbers in by_worker.values()), by_worker
    assert sorted(n for numbers in by_worker.values() for n in numbers) == list(range(len(complete)))


@pytest.mark.reliability
def test_sigkilled_run_resumes_without_losing_finished_trials(tmp_path: Path) -> None:
    args = ("--objective", "ackley", "--dims", "3", "--levels", "6", "--sampler", "tt", "--seed", "1",
            "--trials", "20", "--trial-sleep", "0.5", "--storage", "study.db", "--study", "r", "--no-progress")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    worker = subprocess.Popen(tune_command(*args), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    completed_before = 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and completed_before < 4:
        time.sleep(0.3)
        if worker.poll() is not None:
            pytest.fail(f"tune worker exited early: {worker.stderr.read().decode() if worker.stderr else ''}")
        completed_before = count_complete(tmp_path / "study.db")
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    assert 4 <= completed_before < 20
    finished_before = {t.number: (t.params, t.values) for t in optuna.load_study(study_name="r", storage=url)
                       .get_trials(states=(optuna.trial.TrialState.COMPLETE,))}

    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    after = optuna.load_study(study_name="r", storage=url).get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(after) == 20
    kept = {t.number: (t.params, t.values) for t in after if t.number in finished_before}
    assert kept == finished_before


def count_complete(database: Path) -> int:
    """Finished trials, read with plain sqlite3 so polling does not contend with the worker's writes."""
    import sqlite3

    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as connection:
            return int(connection.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0])
    except sqlite3.Error:  # schema not created yet, or the file is locked for a moment
        return 0


def test_report_and_best_errors(tmp_path: Path) -> None:
    done = run_cli("--objective", "ackley", "--trials", "6", "--storage", "s.db", "--study", "f",
                   "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "best trial" in done.stdout
    report = run_cli("report", "--study", "f", "--storage", "s.db", "--out", "rep", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    for name in ("trials.csv", "summary.json", "history.png", "report.html"):
        assert (tmp_path / "rep" / name).stat().st_size > 0
    missing = run_cli("report", "--study", "nope", "--storage", "s.db", cwd=tmp_path)
    assert_clear_error(missing, "no study named 'nope'")
    # Test-function trials train no model, so there is nothing to export.
    best = run_cli("best", "--study", "f", "--storage", "s.db", "--out", "b", cwd=tmp_path)
    assert_clear_error(best, "has no model file")


def test_the_report_hint_works_as_printed_and_a_missing_storage_is_not_created(tmp_path: Path) -> None:
    import re
    import shlex

    done = run_cli("--objective", "ackley", "--trials", "3", "--storage", "runs.db", "--study", "s1",
                   "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    hint = re.search(r"`edgewise (tune report [^`]+)`", done.stdout)
    assert hint is not None, done.stdout
    shown = subprocess.run([sys.executable, "-m", "edgewise", *shlex.split(hint.group(1)), "--out", "r"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert shown.returncode == 0, shown.stderr
    missing = run_cli("report", "--study", "s1", "--storage", "other.db", cwd=tmp_path)
    assert_clear_error(missing, "no study storage at")
    assert not (tmp_path / "other.db").exists()
