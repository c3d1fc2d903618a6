"""A small explicit registry for every plug-in family (zoo archs, compression steps, samplers,
targets, video sources, bundle stores).

Registries are objects built explicitly, in one place per family (`Registry.of(kind, {...})`),
never filled by importing a module for its side effect; registering a name twice is an error,
and asking for an unknown name raises a ConfigError that lists the known ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from edgewise.core.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    summary: str


class Registry(Generic[T]):
    """Named plug-ins of one family, e.g. ``Registry[type[Step]]("compression step")``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    @classmethod
    def of(cls, kind: str, entries: Mapping[str, T | tuple[T, str]]) -> Registry[T]:
        """A registry of `kind` holding `entries`: name -> plug-in, or name -> (plug-in, summary);
        without a summary, the plug-in's docstring's first line is its summary."""
        registry = cls(kind)
        for name, entry in entries.items():
            obj, summary = entry if isinstance(entry, tuple) else (entry, "")
            registry.add(name, obj, summary)
        return registry

    def add(self, name: str, obj: T, summary: str = "") -> T:
        if name in self._entries:
            raise ConfigError(f"{self.kind} {name!r} is registered twice", "give the plug-in a unique name")
        self._entries[name] = Entry(name, obj, summary or _first_doc_line(obj))
        return obj

    def get(self, name: str) -> T:
        try:
            return self._entries[name].obj
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise ConfigError(
                f"unknown {self.kind} {name!r}", f"use one of: {known}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        return sorted(self._entries)


def _first_doc_line(obj: object) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
