"""The reliability tests' one way in: kill the agent at an update state boundary.

`EDGEWISE_AGENT_CRASH_IN_STATE=verify` makes the agent SIGKILL itself right after it persisted
the `verify` state, before running it: what a power cut there would leave. It is not a setting
(nothing in `agent.toml` or `AgentSettings` can turn it on); the runner asks for it here, once.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping
from typing import get_args

from edgewise.core.errors import ConfigError
from edgewise.core.wire import UpdateState

CRASH_ENV = "EDGEWISE_AGENT_CRASH_IN_STATE"


def crash_hook_from_env(environ: Mapping[str, str] | None = None) -> Callable[[UpdateState], None] | None:
    """The hook to pass as `UpdateMachine(after_persist=...)`, or None when the variable is unset."""
    state = (os.environ if environ is None else environ).get(CRASH_ENV)
    if not state:
        return None
    if state not in get_args(UpdateState):
        raise ConfigError(f"{CRASH_ENV}={state!r} is not an update state",
                          f"use one of: {', '.join(get_args(UpdateState))}")

    def crash(entered: UpdateState) -> None:
        if entered == state:
            os.kill(os.getpid(), signal.SIGKILL)

    return crash
