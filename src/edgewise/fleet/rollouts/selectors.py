"""Which devices a deployment targets: a group, tags (all must match) and/or explicit ids.

On the command line: `group=lobby,tag:site=paris,id=dev-1a2b` (comma-separated terms, all must hold;
several `id=` terms form a list), or `all`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from edgewise.core.errors import ConfigError
from edgewise.core.settings import StrictSettings
from edgewise.core.wire import Name


class Selector(StrictSettings):
    group: Name | None = None
    tags: dict[Name, Name] = Field(default_factory=dict, max_length=32)
    ids: list[Name] = Field(default_factory=list, max_length=10_000)

    def describe(self) -> str:
        parts = ([f"group={self.group}"] if self.group else []) + [f"tag:{k}={v}" for k, v in self.tags.items()]
        parts += [f"id={device_id}" for device_id in self.ids]
        return ",".join(parts) or "all"


def parse_selector(text: str) -> Selector:
    if text.strip() in ("", "all", "*"):
        return Selector()
    group: str | None = None
    tags: dict[str, str] = {}
    ids: list[str] = []
    for term in (t.strip() for t in text.split(",") if t.strip()):
        key, sep, value = term.partition("=")
        if not sep or not value:
            raise ConfigError(f"selector term {term!r} is not KEY=VALUE",
                              "write e.g. group=lobby,tag:site=paris,id=dev-1234 or `all`")
        if key == "group":
            group = value
        elif key == "id":
            ids.append(value)
        elif key.startswith("tag:") and len(key) > 4:
            tags[key[4:]] = value
        else:
            raise ConfigError(f"unknown selector key {key!r}", "use group=, tag:NAME= or id=")
    return Selector(group=group, tags=tags, ids=ids)


def matches(selector: Selector, device: Any) -> bool:
    """`device`: a Device, or any row with its id, group and tags."""
    if selector.ids and device.id not in selector.ids:
        return False
    if selector.group is not None and device.group != selector.group:
        return False
    device_tags = device.tags or {}
    return all(device_tags.get(key) == value for key, value in selector.tags.items())
