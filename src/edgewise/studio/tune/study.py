"""Create or load a study on a storage URL, so runs resume and several workers share one study.

`--storage` takes a SQLite file path (the default, `edgewise-tune.db`), `sqlite:///...`, or
`postgresql://user:pass@host:port/db` for distributed workers. An unreachable database raises
ServiceUnavailable naming the URL (password hidden) instead of a SQLAlchemy traceback.
"""

from __future__ import annotations

import os
import re
import socket
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from edgewise.core.errors import ConfigError, ServiceUnavailable

DEFAULT_STORAGE = "edgewise-tune.db"
# A worker killed mid-trial leaves it RUNNING; its heartbeat stops and the next worker marks it failed.
HEARTBEAT_INTERVAL_S = 5
HEARTBEAT_GRACE_S = 15
CONNECT_TIMEOUT_S = 5


def storage_url(value: str | None) -> str:
    """Normalise `--storage`: a plain path becomes an absolute sqlite URL."""
    if not value:
        value = DEFAULT_STORAGE
    if "://" not in value:
        path = Path(value).expanduser().resolve()
        if not path.parent.is_dir():
            raise ConfigError(f"storage folder {str(path.parent)!r} does not exist", "create it or pass another path")
        return f"sqlite:///{path}"
    scheme = value.split("://", 1)[0].lower()
    if not (scheme.startswith("sqlite") or scheme.startswith("postgresql") or scheme.startswith("mysql")):
        raise ConfigError(f"unsupported storage URL scheme {scheme!r}", "use a file path, sqlite:/// or postgresql://")
    return value


def redact(url: str) -> str:
    """The URL with its password replaced, for error messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def open_storage(url: str | None) -> RDBStorage:
    """Connect to (and if needed create the schema of) the study storage."""
    resolved = storage_url(url)
    engine_kwargs: dict[str, object] = {}
    if resolved.startswith("postgresql"):
        engine_kwargs = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                resolved,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_INTERVAL_S,
                grace_period=HEARTBEAT_GRACE_S,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
    except Exception as error:  # SQLAlchemy raises many driver-specific types; all mean "cannot reach it"
        raise ServiceUnavailable(
            f"cannot open study storage {redact(resolved)}: {type(error).__name__}: {str(error).splitlines()[0]}",
            "check that the database server is running, the URL, user and password are right, and it is reachable",
        ) from None


def open_study(
    name: str,
    storage: str | None,
    *,
    directions: list[str],
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """Create the study, or load it when it exists (resume, or join as another worker)."""
    backend = open_storage(storage)
    try:
        study = optuna.create_study(
            study_name=name, storage=backend, sampler=sampler, pruner=pruner,
            directions=directions, load_if_exists=True,
        )
    except ValueError as error:
        raise ConfigError(f"study {name!r}: {error}", "use a new --study name for different objectives") from None
    if [d.name.lower() for d in study.directions] != [d.lower() for d in directions]:
        raise ConfigError(
            f"study {name!r} exists with directions {[d.name.lower() for d in study.directions]}, not {directions}",
            "use the same --objectives as the run that created it, or a new --study name",
        )
    return study


def load_study(name: str, storage: str | None) -> optuna.Study:
    """An existing study, for `tune best` and `tune report` (never creates an empty storage)."""
    resolved = storage_url(storage)
    if resolved.startswith("sqlite:///") and not Path(resolved.removeprefix("sqlite:///")).is_file():
        raise ConfigError(f"no study storage at {resolved.removeprefix('sqlite:///')}",
                          "pass the --storage the study ran with (`edgewise tune` prints it)")
    backend = open_storage(storage)
    try:
        return optuna.load_study(study_name=name, storage=backend)
    except KeyError:
        known = ", ".join(s.study_name for s in optuna.get_all_study_summaries(backend)) or "none"
        where = redact(storage_url(storage))
        raise ConfigError(f"no study named {name!r} in {where}", f"known studies: {known}") from None


def worker_id() -> str:
    """Which worker ran a trial (recorded on every trial; host and process id)."""
    return f"{socket.gethostname()}:{os.getpid()}"
