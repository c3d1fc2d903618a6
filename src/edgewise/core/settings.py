"""Typed settings objects shared by several parts. Settings are passed in, never read deep inside."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict


class StrictSettings(BaseModel):
    """Base for every settings object: unknown keys are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def default_home() -> Path:
    """Where edgewise keeps keys and the local registry unless told otherwise."""
    return Path.home() / ".edgewise"
